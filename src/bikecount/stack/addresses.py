"""Where the stack's servers listen and how clients reach them: ``host:port``, the address a
local client uses for a wildcard bind, and the Host headers MLflow accepts.
"""

from __future__ import annotations

from collections.abc import Sequence

# Addresses that mean "every interface": clients must connect through loopback instead.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("localhost", "127.0.0.1")
# Clients on a private network reach a server bound to every interface by its private IP.
PRIVATE_NETWORK_HOSTS = ("10.*", "192.168.*", "172.1[6-9].*", "172.2[0-9].*", "172.3[01].*")


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_host(bind_host: str) -> str:
    """The address a local client connects to for a server bound to ``bind_host``."""
    return "127.0.0.1" if bind_host in WILDCARD_HOSTS else bind_host


def allowed_hosts(bind_host: str, extra_names: Sequence[str] = ()) -> list[str]:
    """The Host headers the MLflow server accepts (MLflow 3 rejects any other, with 403).

    Loopback names and ``extra_names`` are accepted on any port (a published port may differ
    from the one inside a container); a specific bind address is accepted as itself, and a
    wildcard bind also accepts private-network addresses, as MLflow's own default does.
    """
    names = [*LOOPBACK_NAMES, *extra_names]
    if bind_host not in WILDCARD_HOSTS and bind_host not in names:
        names.append(bind_host)
    hosts = [pattern for name in names for pattern in (name, f"{name}:*")]
    if bind_host in WILDCARD_HOSTS:
        hosts.extend(PRIVATE_NETWORK_HOSTS)
    return hosts
