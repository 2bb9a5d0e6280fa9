"""A TCP relay in front of a server that can break a connection mid-request, like a flaky link.

``CuttingRelay(port).cut_after(n)``: the next ``n`` bytes from clients reach the server, then
the connection is closed on both sides (the server sees the body end early, the client a
broken connection).  After the cut the relay passes traffic again.
"""
from __future__ import annotations

import socket
import threading


class CuttingRelay:
    """Relays 127.0.0.1:<own port> to 127.0.0.1:<target port>."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._budget: int | None = None
        self._lock = threading.Lock()
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, count: int) -> None:
        """Let ``count`` more client bytes through, then break that connection."""
        with self._lock:
            self._budget = count

    def close(self) -> None:
        """Stop accepting."""
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump_up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(server, client), daemon=True).start()

    def _allow(self, size: int) -> tuple[int, bool]:
        with self._lock:
            if self._budget is None:
                return size, False
            allowed = min(size, self._budget)
            self._budget -= allowed
            if self._budget == 0:
                self._budget = None
                self.cuts += 1
                return allowed, True
            return allowed, False

    def _pump_up(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    server.shutdown(socket.SHUT_WR)
                    return
                allowed, cut = self._allow(len(data))
                server.sendall(data[:allowed])
                if cut:
                    server.shutdown(socket.SHUT_WR)  # the server reads what came, then EOF
                    client.close()
                    return
        except OSError:
            _close(client, server)

    @staticmethod
    def _pump_down(server: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        _close(client, server)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.close()
        except OSError:
            pass
