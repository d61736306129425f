"""Rebuild course_utils/assets/clip_tokenizer/ (vocab.json, merges.txt) from the BPE file that the
open-clip-torch wheel ships, so stand-in models get the real CLIP tokenizer without the hub.

Run:  python scripts/build_clip_tokenizer.py      (needs `pip install open-clip-torch`)
The vocabulary is OpenAI CLIP's (MIT licence); see the LICENSE file written beside it.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "course_utils" / "assets" / "clip_tokenizer"
N_MERGES = 49152 - 256 - 2  # as in OpenAI's simple_tokenizer.py


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """Return the vocabulary (token -> id) and the merge lines, in the order OpenAI's tokenizer uses."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")[1 : N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]  # open_clip calls them <start_of_text>/<end_of_text>
    return {tok: i for i, tok in enumerate(vocab)}, [" ".join(m) for m in merges]


def main() -> None:
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    vocab, merges = build(bpe)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {OUT}")


if __name__ == "__main__":
    main()
