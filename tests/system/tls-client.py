#!/usr/bin/python3
"""Keeps one TLS connection to gate open across a certificate rotation (system suite, check 6).

Usage: tls-client.py HOST PORT GO_FILE
Prints "first SHA256 STATUS" after the handshake and a first keep-alive GET /health, then waits until
GO_FILE exists, sends a second GET /health on the same connection and prints "second SHA256 STATUS".
SHA256 is the fingerprint of the certificate this connection was set up with.
"""
import hashlib
import os
import socket
import ssl
import sys
import time


def request(tls):
    tls.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: gate-system-test\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = tls.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        body += chunk
    return status


def main():
    host, port, go_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    sock = socket.create_connection((host, port), timeout=15)
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    fp = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
    print("first", fp, request(tls), flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go_file):
        if time.monotonic() > deadline:
            print("timeout waiting for", go_file, flush=True)
            return 1
        time.sleep(0.1)
    print("second", fp, request(tls), flush=True)
    tls.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # the caller greps stdout: say what went wrong there
        print("error", type(e).__name__, e, flush=True)
        sys.exit(1)
