"""The pipeline engine service: runs executions of SageMaker pipeline definitions by feeding
the pure planner (stoker.core.pipelines) and carrying out its plans."""
