"""CloudEvents the harness publishes about security (the contract with the registrar, issue 10).

=======================================  ===============================================  ====
type                                     when                                             code
=======================================  ===============================================  ====
``qiki.security.v1.auth_failed``         the server advised an authentication failure     820
                                         (``$SYS.SERVER.<id>.CLIENT.AUTH.ERR``), relayed
``qiki.security.v1.permission_denied``   a probe saw the server deny a publish/subscribe  830
                                         (nats-server advises no permission violations)
=======================================  ===============================================  ====

Codes and names are the spec's (``codes.rules`` of scenarios/specs/BotSpec.yaml); the channel
that carries these types says where they are published. ``data`` never holds a secret: the
server's advisory names the user (tokens are ``[REDACTED]`` by the server), never a password.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, NotRequired

from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

__all__ = ["AUTH_FAILED", "PERMISSION_DENIED", "SOURCE", "AuthFailed", "PermissionDenied"]

#: An authentication failure the server advised (registrar: 820 AUTH_FAILED).
AUTH_FAILED: Final = "qiki.security.v1.auth_failed"
#: A publish/subscribe the server denied, as a probe observed it (830 PERMISSION_DENIED).
PERMISSION_DENIED: Final = "qiki.security.v1.permission_denied"
#: CloudEvent ``source`` of the harness's security events.
SOURCE: Final = "urn:qiki-harness:security"

_Text = Annotated[str, Field(max_length=1024)]


class AuthFailed(TypedDict):
    """``data`` of ``qiki.security.v1.auth_failed``: the server's advisory, trimmed."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    #: the advisory's own id and type (``io.nats.server.advisory.v1.client_disconnect``)
    advisory_id: _Text
    advisory_type: _Text
    #: server name and id
    server: _Text
    server_id: _Text
    #: why the server refused (``Authentication Failure``, ``TLS Handshake Error``...)
    reason: _Text
    #: the client as the server saw it; ``user`` is the user name or nkey, never a secret
    client_host: NotRequired[_Text]
    client_user: NotRequired[_Text]
    client_name: NotRequired[_Text]
    client_lang: NotRequired[_Text]
    client_version: NotRequired[_Text]


class PermissionDenied(TypedDict):
    """``data`` of ``qiki.security.v1.permission_denied``: one denial a probe observed."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    identity: _Text
    action: Literal["publish", "subscribe"]
    subject: _Text
    #: the server's words: ``-ERR 'Permissions Violation for Publish to "..."'``
    error: _Text
    #: was the denial what the scenario expected (``expect: denied``)
    expected: bool
