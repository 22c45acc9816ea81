#!/usr/bin/env python3
"""Writes the deterministic test audio of the IVM scenarios (no dependencies).

    sipp-scenarios/audio/make-audio.py        # rewrites sweep-4s.ul next to this file

sweep-4s.ul: 4 s of headerless G.711 mu-law, 8 kHz mono (32,000 bytes = 200 frames of
20 ms / 160 bytes): a sine sweep from 200 Hz to 3,400 Hz whose level rises and falls
twice, plus a little pseudo-random noise (a fixed LCG), so that every 20 ms frame is
different and byte-for-byte comparisons of what a target hears are meaningful. SIPp
sends it with `<exec rtp_stream="sweep-4s.ul,1,0"/>` (payload type 0 = PCMU).
The encoder is the ITU-T G.711 mu-law rule (bias 0x84, clip 32635), as in G.191.
"""
import math
import os

RATE = 8000
SECONDS = 4


def linear_to_ulaw(sample: int) -> int:
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def main() -> None:
    n = RATE * SECONDS
    f0, f1 = 200.0, 3400.0
    state = 12345
    phase = 0.0
    out = bytearray()
    for i in range(n):
        t = i / RATE
        freq = f0 + (f1 - f0) * t / SECONDS
        phase += 2 * math.pi * freq / RATE
        level = 0.15 + 0.75 * abs(math.sin(math.pi * 2 * t / SECONDS))
        state = (1103515245 * state + 12345) & 0x7FFFFFFF
        noise = ((state >> 16) % 2001 - 1000) / 1000.0
        value = 20000 * level * math.sin(phase) + 600 * noise
        out.append(linear_to_ulaw(int(round(value))))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweep-4s.ul")
    with open(path, "wb") as f:
        f.write(out)
    print(f"wrote {path} ({len(out)} bytes)")


if __name__ == "__main__":
    main()
