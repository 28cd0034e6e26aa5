"""The SSL context a client's connections verify the API's certificate with.

``verify=True`` is :func:`ssl.create_default_context`: OpenSSL's default CA locations, which
honour ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, as every earlier version did. A path trusts
only the CAs in it (a PEM file, or a directory of hashed certificates as ``c_rehash`` makes),
as ``requests`` and ``httpx`` do with ``verify="ca.pem"``. ``"system"`` asks the operating
system (Keychain, the Windows store, the distribution's bundle) through the ``truststore``
package; it is opt-in, because on macOS and Windows it ignores ``SSL_CERT_FILE``, and a
setting that worked yesterday must not stop working because a package got installed. An
``ssl.SSLContext`` is used as given.
"""

from __future__ import annotations

import os
import ssl

from .._core.errors import ConfigError

__all__ = ["make_context"]


def make_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext:
    """Build the client's SSL context.

    Args:
        verify: ``ValarClient.verify``: ``True``, a path, ``"system"`` or a context.

    Returns:
        A context that verifies the server's certificate and host name (unless the caller's
        own context says otherwise).

    Raises:
        ConfigError: The path does not exist or holds no usable certificate;
            ``"system"`` without ``truststore`` installed.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is True:
        return ssl.create_default_context()
    assert isinstance(verify, str)
    if verify == "system":
        try:
            import truststore
        except ImportError:
            raise ConfigError(
                'verify="system" uses the operating system\'s trust store through the '
                "truststore package, which is not installed: pip install truststore"
            ) from None
        context: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return context
    folder = os.path.isdir(verify)
    if not folder and not os.path.isfile(verify):
        raise ConfigError(f"verify={verify!r}: no such file or directory of CA certificates")
    try:
        if folder:
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"verify={verify!r}: not a PEM file of CA certificates ({exc})") from None
