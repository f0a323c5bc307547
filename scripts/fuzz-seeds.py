#!/usr/bin/env python3
"""Seeds the fuzz corpora from the real wire captures and device XML in tests/data/cpe.

Each capture is a transcript: a `===== HH:MM:SS <what>` line, HTTP headers, a blank line, then
the body up to the next `=====` line. From it come:
  host/cwmp/fuzz/corpus/decode/  every SOAP body, either direction, and the device XML;
  host/http/fuzz/corpus/framer/  each CPE POST as raw HTTP, each session as one connection,
                                 and the same requests chunked and with a character-counted
                                 Content-Length (as some firmware sends);
  host/http/fuzz/corpus/digest/  every WWW-Authenticate and Authorization header.
Seeds are named by content hash, so running this again adds nothing twice.
"""
import hashlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data/cpe"
OUT = {
    "decode": ROOT / "host/cwmp/fuzz/corpus/decode",
    "framer": ROOT / "host/http/fuzz/corpus/framer",
    "digest": ROOT / "host/http/fuzz/corpus/digest",
}


def seed(kind, data):
    if isinstance(data, str):
        data = data.encode()
    OUT[kind].mkdir(parents=True, exist_ok=True)
    (OUT[kind] / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def blocks(transcript):
    parts = re.split(r"^===== \S+ (.*)$", transcript, flags=re.M)
    for heading, text in zip(parts[1::2], parts[2::2]):
        head, _, body = text.lstrip("\n").partition("\n\n")
        headers = [line for line in head.split("\n") if ":" in line]
        yield heading, headers, body.rstrip("\n")


def http(headers, body, content_length=None):
    length = len(body.encode()) if content_length is None else content_length
    kept = [h for h in headers if not h.lower().startswith("content-length:")]
    return "POST /acs HTTP/1.1\r\n" + "".join(h + "\r\n" for h in kept) + f"Content-Length: {length}\r\n\r\n" + body


def chunked(headers, body):
    kept = [h for h in headers if not h.lower().startswith("content-length:")]
    data = body.encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 700]), data[i:i + 700]) for i in range(0, len(data), 700))
    return ("POST /acs HTTP/1.1\r\n" + "".join(h + "\r\n" for h in kept) + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"


for capture in sorted((DATA / "captures").glob("*.wire.txt")):
    session = []
    for heading, headers, body in blocks(capture.read_text(errors="replace")):
        for header in headers:
            name, _, value = header.partition(":")
            if name.lower() in ("www-authenticate", "authorization"):
                seed("digest", value.strip())
        if "Envelope" in body:
            seed("decode", body)
        if heading.startswith("CPE->ACS POST"):
            request = http(headers, body)
            seed("framer", request)
            session.append(request)
            if body:
                seed("framer", chunked(headers, body))
                if len(body) != len(body.encode()):
                    seed("framer", http(headers, body, content_length=len(body)))
    if session:
        seed("framer", "".join(session))

for xml in sorted(DATA.glob("*.xml")):
    seed("decode", xml.read_bytes())
