"""The S3 index benchmark's harness on a tiny store: it counts what it says and checks its model."""

from __future__ import annotations

import argparse
import os
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)


def test_the_harness_counts_requests_and_checks_the_projection(monkeypatch):
    import s3_index_bench

    monkeypatch.setattr(s3_index_bench, "REPEATS", 1)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.setenv(name, "")        # the bench sets them; restored after the test
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    rows, text, raw = s3_index_bench.run(argparse.Namespace(sizes="40,60", rescan_upto=40))
    by_name = {r.name: r for r in rows}
    listed = raw["sizes"][40]["list all (table)"]
    assert listed["requests"] == 2 + 1 + 7                  # LIST, head, 1 segment, 7 pending
    assert raw["sizes"][40]["no index (GET every manifest)"]["requests"] == 40 + 1
    assert raw["projection"]["formula_matches"] and raw["segment_check"]["requests"] == 3
    assert by_name["100,000 runs cold: list all (projected)"].value == "16 requests"
    assert "matches every measured size" in text
