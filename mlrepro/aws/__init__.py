"""Amazon Web Services: S3 remotes, live push, SageMaker jobs (launch, relaunch, pull-job).

- `remote`: named S3 remotes and moving runs between stores (push, pull, sync);
- `live_push`: the observer that pushes a training run to a remote while it trains;
- `job_output`: importing the runs a SageMaker job left in its output (`pull-job`);
- `launch`: a SageMaker training job for a script (SDK v3 `ModelTrainer`);
- `relaunch`: the job spec of a recorded run, to run it again (`launch --from`);
- `calls`: a log of the AWS calls a boto3 session makes, and offline answers for dry runs.

boto3 and sagemaker are imported only when a function here needs them.
"""
