"""Plugin registrations, kept import-light: plux loads every plugin spec of a
namespace to list them, so the heavy modules are imported only in ``load()``."""

from localstack.runtime.server.core import RuntimeServerPlugin
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class HostRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "sluice-host"

    def load(self, *args, **kwargs):
        from sluice_localstack.executor import HostRuntimeExecutor

        return HostRuntimeExecutor


class LoopbackTwistedServerPlugin(RuntimeServerPlugin):
    name = "sluice-twisted"

    def load(self, *args, **kwargs):
        from sluice_localstack.gateway import LoopbackTwistedRuntimeServer

        return LoopbackTwistedRuntimeServer()
