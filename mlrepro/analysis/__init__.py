"""Reading runs back: diff, report, trace and reproduce, over the records a store holds.

- `diff`: what differs between two runs (with the source changes from git or the stored code);
- `report`: learning curves and differences as an HTML page or PNG;
- `trace`: the run that produced a model file, export or archive, and its lineage;
- `reproduce`: rebuild a run's code, check its environment and data, re-run it, judge;
- `rebuild`: a run's code from its record (commit + patch, or the stored script);
- `recheck`: a run's recorded data fingerprinted again;
- `artifacts`: two runs' artifacts compared by content, not by how they were saved.

The comparisons themselves are pure (`mlrepro.compare`); this layer reads stores,
git and files, and hands plain values to them.
"""
