# SPDX-License-Identifier: BSD-2-Clause
"""A small, independent encoder/decoder of pcapline protocol v1 frames, written from
proto/PROTOCOL.md alone (no product code), and a blocking TLS client that speaks it
with Python's ssl module and a sensor certificate. Used by the hostile-input tests to
send frames the real sensor never would.
"""
import os
import socket
import ssl
import struct
import time
from collections import namedtuple

MAGIC = 0x50434C4E
HELLO, WELCOME, BATCH, ACK, STATS, NAMES, HEARTBEAT, CONTROL, ERROR = range(1, 10)
F_LZ4 = 0x0001
HDR = struct.Struct(">IBBHII")
HDR_LEN = 16
REC_HDR_LEN = 20
MAX_HELLO = 5172
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

# ERROR codes (section 5.8)
E_PROTOCOL, E_VERSION, E_AUTH, E_LIMIT, E_STORAGE, E_SHUTDOWN = range(1, 7)

# STATS counter ids (section 5.6)
ST_CAPTURED, ST_KERNEL_DROPS, ST_IF_DROPS, ST_QUEUE_DROPS, ST_SPOOL_DROPS = range(1, 6)

Frame = namedtuple("Frame", "type flags payload")
Welcome = namedtuple("Welcome", "epoch next_seq max_frame heartbeat_ms")


def header(ftype, length, flags=0, version=1, magic=MAGIC, reserved=0):
    return HDR.pack(magic, version, ftype, flags, length, reserved)


def frame(ftype, payload, flags=0, **kw):
    return header(ftype, len(payload), flags, **kw) + payload


def lstr(s):
    b = s if isinstance(s, bytes) else s.encode("ascii")
    return struct.pack(">H", len(b)) + b


def hello(sensor_id, epoch, version="hostile-0", caps=1, token="", ifaces=((1, 65535, "h0"),)):
    out = lstr(sensor_id) + lstr(version) + struct.pack(">IQ", caps, epoch) + lstr(token)
    out += struct.pack(">H", len(ifaces))
    for linktype, snaplen, name in ifaces:
        out += struct.pack(">II", linktype, snaplen) + lstr(name)
    return out


def record(ts_ns, data, iface=0, origlen=None):
    return struct.pack(">QHHII", ts_ns, iface, 0, len(data), len(data) if origlen is None else origlen) + data


def batch_payload(seq, records, raw_len=None, n_records=None, data=None):
    """BATCH payload of already encoded records; `data` replaces the record bytes
    (e.g. with an lz4 block), raw_len/n_records override the announced values."""
    raw = b"".join(records)
    hdr = struct.pack(">QII", seq, len(records) if n_records is None else n_records,
                      len(raw) if raw_len is None else raw_len)
    return hdr + (raw if data is None else data)


def batch(seq, records, lz4=False):
    """A valid BATCH frame (uncompressed, or one literal-only lz4 block)."""
    raw = b"".join(records)
    if lz4:
        return frame(BATCH, batch_payload(seq, records, data=lz4_literals(raw)), F_LZ4)
    return frame(BATCH, batch_payload(seq, records))


def stats(ts_ns, counters):
    out = struct.pack(">QH", ts_ns, len(counters))
    for cid, value in counters:
        out += struct.pack(">HQ", cid, value)
    return out


def heartbeat(ts_ns):
    return struct.pack(">Q", ts_ns)


def _lz4_len(value):
    out = bytearray()
    while value >= 255:
        out.append(255)
        value -= 255
    out.append(value)
    return bytes(out)


def lz4_literals(raw):
    """One lz4 block holding `raw` as a single literal run (valid, no compression)."""
    n = len(raw)
    if n < 15:
        return bytes([n << 4]) + raw
    return bytes([0xF0]) + _lz4_len(n - 15) + raw


def lz4_run_block(out_len, byte=0):
    """A valid lz4 block that decompresses to `out_len` copies of `byte` (out_len >= 25):
    one literal, one match at offset 1 of out_len - 6 bytes, five literals at the end
    (the format wants the last five bytes to be literals). Its size is about
    out_len / 255 bytes: a compression ratio of 255, the most lz4 allows."""
    assert out_len >= 25
    match = out_len - 6
    b = bytearray([0x1F])
    b.append(byte)
    b += struct.pack("<H", 1)
    b += _lz4_len(match - 4 - 15)
    b += bytes([0x50]) + bytes([byte]) * 5
    return bytes(b)


def ethernet_udp(n, size=120):
    """A recognisable Ethernet/IPv4/UDP-looking packet whose bytes carry n."""
    body = struct.pack(">Q", n) + os.urandom(8)
    body += bytes(max(0, size - 14 - 20 - 8 - len(body)))
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(body), n & 0xFFFF, 0, 64, 17, 0,
                     bytes([198, 18, 99, 1]), bytes([198, 18, 99, 2]))
    udp = struct.pack(">HHHH", 40000, 9, 8 + len(body), 0)
    return eth + ip + udp + body


def parse_frames(buf):
    """Splits complete frames off buf; returns (frames, rest)."""
    out = []
    while len(buf) >= HDR_LEN:
        magic, ver, ftype, flags, length, _res = HDR.unpack_from(buf, 0)
        if magic != MAGIC:
            raise ValueError(f"bad magic from receiver: {buf[:16].hex()}")
        if len(buf) < HDR_LEN + length:
            break
        out.append(Frame(ftype, flags, bytes(buf[HDR_LEN:HDR_LEN + length])))
        buf = buf[HDR_LEN + length:]
    return out, buf


def decode_error(payload):
    code, n = struct.unpack_from(">HH", payload, 0)
    return code, payload[4:4 + n].decode("ascii", "replace")


def decode_ack(payload):
    return struct.unpack(">QQ", payload)


class Client:
    """A blocking TLS client with a sensor certificate (CN = sensor id)."""

    def __init__(self, port, certs, cert_id, host="127.0.0.1", timeout=10.0):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(certs / "ca.crt")
        ctx.load_cert_chain(certs / f"{cert_id}.crt", certs / f"{cert_id}.key")
        raw = socket.create_connection((host, port), timeout=timeout)
        self.s = ctx.wrap_socket(raw, server_hostname=host)
        self.s.settimeout(timeout)
        self.buf = b""
        self.frames = []
        self.closed = False

    def send(self, data):
        """Sends data; False if the receiver had already closed the connection."""
        try:
            self.s.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return False

    def _fill(self, timeout):
        self.s.settimeout(timeout)
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        got, self.buf = parse_frames(self.buf)
        self.frames += got
        return True

    def next_frame(self, timeout=10.0, skip=(HEARTBEAT,)):
        """The next frame not of a type in `skip`, or None on close or timeout."""
        deadline = time.time() + timeout
        while True:
            while self.frames:
                f = self.frames.pop(0)
                if f.type not in skip:
                    return f
            left = deadline - time.time()
            if self.closed or left <= 0:
                return None
            self._fill(left)

    def wait_closed(self, timeout=10.0):
        """Reads until the receiver closes; returns (closed, frames received meanwhile)."""
        deadline = time.time() + timeout
        seen = []
        while not self.closed and time.time() < deadline:
            self._fill(max(0.01, deadline - time.time()))
            seen += self.frames
            self.frames = []
        seen += self.frames
        self.frames = []
        return self.closed, seen

    def handshake(self, sensor_id, epoch, **kw):
        """HELLO, then the WELCOME (or raises with what came instead)."""
        self.send(frame(HELLO, hello(sensor_id, epoch, **kw)))
        f = self.next_frame()
        if f is None or f.type != WELCOME:
            raise AssertionError(f"expected WELCOME, got {f}" + (f": {decode_error(f.payload)}" if f and
                                                                    f.type == ERROR else ""))
        return Welcome(*struct.unpack(">QQII", f.payload))

    def expect_ack(self, timeout=10.0):
        f = self.next_frame(timeout)
        if f is None or f.type != ACK:
            raise AssertionError(f"expected ACK, got {f}" + (f": {decode_error(f.payload)}" if f and
                                                                f.type == ERROR else ""))
        return decode_ack(f.payload)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass
