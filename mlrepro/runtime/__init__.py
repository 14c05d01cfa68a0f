"""Where this process runs: this machine, a Deep Learning AMI, or a SageMaker job.

`detect()` reads the environment and the SageMaker tree into a `Runtime`
(model, output and checkpoint directories, channels, hyperparameters, hosts,
rank, chief). One module owns each contract:

- `detection`: `Runtime` and `detect()` (pure), the store and export directories a run uses;
- `sagemaker`: the SageMaker training container contract (paths, files, `SM_*` variables);
- `tfconfig`: parsing and building `TF_CONFIG`;
- `cluster`: rank, world size and the chief, one rule for every launcher;
- `machine`: what the machine says about itself (DLAMI marks, EC2 instance type, GPUs);
- `workers`: comparing every worker's fingerprints with the chief's (pure);
- `exchange`: carrying those fingerprints to the chief and back over TCP, with a timeout;
- `strategy`: the tf.distribute strategy to build, and the worker check (`mlrepro.distribute`);
- `parent_exit`: on SageMaker, SIGTERM to this process when its launcher is gone (the toolkit
  dies of the job's stop signal without forwarding it).

Importing this package imports no framework.
"""

from mlrepro.runtime.detection import (DLAMI, KINDS, LOCAL, RUNS_DIR, SAGEMAKER, Runtime,
                                       default_store, detect, detect_or_none, export_dir,
                                       parse_argv)

__all__ = ["Runtime", "detect", "detect_or_none", "default_store", "export_dir", "parse_argv",
           "KINDS", "LOCAL", "DLAMI", "SAGEMAKER", "RUNS_DIR"]
