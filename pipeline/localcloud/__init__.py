"""The embedded local cloud: a moto server plus the executors moto lacks.

moto (pinned in gaps.MOTO_VERSION) stores resources and runs Step Functions
definitions, but cannot run Lambda code without Docker, has no SageMaker or Glue
`.sync` integrations and no UpdateEndpoint. `gaps.install()` closes each gap in
this package, one module per service; `server` runs the result on a port that
any process reaches through AWS_ENDPOINT_URL.
"""
