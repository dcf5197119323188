"""AWS Lambda entry points of the serverless variant (deploy/aws/template.yaml).

Each handler is a thin adapter: it turns the event AWS hands it into what the lifecycle
services already take (bus records, state changes, job specs) and calls the same classes the
long-running services run (JobService, Launcher, Monitor, Retrier, Notifier):

- `submit.handler`: API Gateway HTTP API (payload 2.0), the jobs API scoped to the caller;
- `launch.handler`: the job table's DynamoDB Stream (lifecycle events) and a schedule that
  resumes interrupted launches, offers due retries and marks stale outbox items;
- `monitor.handler`: EventBridge "SageMaker Training Job State Change" events and a
  schedule that lists what changed (the sweep);
- `react.handler`: the stream's second reader: the retrier, stop requests and the notifier,
  plus a schedule that sends notifications still pending.
"""
