"""LocalStack plugins for sluice's local environment (no Docker needed).

- ``sluice-host`` (``LAMBDA_RUNTIME_EXECUTOR``): runs each Lambda execution
  environment as a local child process of LocalStack, speaking the public
  Lambda Runtime API to the function's ``bootstrap``.
- ``sluice-twisted`` (``GATEWAY_SERVER``): LocalStack's twisted gateway, but
  listening on the host part of ``GATEWAY_LISTEN`` (the stock one binds every
  interface).
"""
