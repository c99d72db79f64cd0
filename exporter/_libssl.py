"""The few libssl calls Python's ssl module does not expose, for exporter-toolkit's
``client_auth_type`` values that accept any certificate and for ``curve_preferences``.

Its own module, imported only when a web config asks for one of those: ctypes and the
libssl handle are not loaded by an exporter that does not need them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ssl

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
SSL_VERIFY_PEER = 0x01
SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
SSL_CTRL_SET_GROUPS_LIST = 92


class OpenSSL:
    """The few libssl calls Python's ssl module does not expose, on its own SSL_CTX."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("ssl") or "libssl.so.3"
        self.lib = ctypes.CDLL(name)
        self.lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
        self.lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        self.lib.SSL_CTX_ctrl.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_long,
            ctypes.c_void_p,
        ]
        self.lib.SSL_CTX_ctrl.restype = ctypes.c_long
        # One callback for the process, kept alive: it accepts whatever certificate came.
        self.accept_any = _VERIFY_CALLBACK(lambda _ok, _store: 1)

    def _ctx(self, context: ssl.SSLContext) -> int:
        """The SSL_CTX* inside ``context`` (after PyObject_HEAD), proven before use."""
        pointer = ctypes.c_void_p.from_address(id(context) + 2 * ctypes.sizeof(ctypes.c_void_p))
        address = pointer.value
        saved = context.verify_mode
        ok = address is not None
        for mode, expected in ((ssl.CERT_OPTIONAL, 1), (ssl.CERT_REQUIRED, 3), (ssl.CERT_NONE, 0)):
            context.verify_mode = mode
            ok = ok and self.lib.SSL_CTX_get_verify_mode(address) == expected
        context.verify_mode = saved
        if not ok or address is None:
            raise ValueError("this Python's ssl module does not expose its SSL_CTX as expected")
        return int(address)

    def accept_any_client_cert(self, context: ssl.SSLContext, *, required: bool) -> None:
        mode = SSL_VERIFY_PEER | (SSL_VERIFY_FAIL_IF_NO_PEER_CERT if required else 0)
        self.lib.SSL_CTX_set_verify(self._ctx(context), mode, self.accept_any)

    def set_groups(self, context: ssl.SSLContext, groups: list[str]) -> None:
        names = ctypes.create_string_buffer(":".join(groups).encode())
        if self.lib.SSL_CTX_ctrl(self._ctx(context), SSL_CTRL_SET_GROUPS_LIST, 0, names) != 1:
            raise ValueError(f"curve_preferences: OpenSSL refused {':'.join(groups)}")
