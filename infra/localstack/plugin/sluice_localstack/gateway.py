"""LocalStack's twisted runtime server, listening only where ``GATEWAY_LISTEN``
says (e.g. ``127.0.0.1:4566``). The stock twisted server ignores the host part
for IPv4 and binds 0.0.0.0, which would expose the emulator (and the function
credentials it hands out) to the network. Hypercorn binds correctly but was
seen hanging on SIGTERM."""

from rolo.gateway import Gateway
from rolo.serving.twisted import TwistedGateway
from twisted.internet import endpoints, reactor, ssl

from localstack import config
from localstack.aws.serving.twisted import TLSMultiplexerFactory
from localstack.runtime.server.twisted import TwistedRuntimeServer


class LoopbackTwistedRuntimeServer(TwistedRuntimeServer):
    def register(
        self,
        gateway: Gateway,
        listen: list[config.HostAndPort],
        ssl_creds: tuple[str, str] | None = None,
    ):
        site = TwistedGateway(gateway)
        protocol_factory = site
        if ssl_creds:
            cert_file_name, key_file_name = ssl_creds
            context_factory = ssl.DefaultOpenSSLContextFactory(key_file_name, cert_file_name)
            context_factory.getContext().use_certificate_chain_file(cert_file_name)
            # serves plain HTTP and TLS on the same port, as the stock server does
            protocol_factory = TLSMultiplexerFactory(context_factory, False, site)

        for host_and_port in listen:
            if config.is_ipv6_address(host_and_port.host):
                endpoint_type = endpoints.TCP6ServerEndpoint
            else:
                endpoint_type = endpoints.TCP4ServerEndpoint
            endpoint = endpoint_type(reactor, host_and_port.port, interface=host_and_port.host)
            endpoint.listen(protocol_factory)
