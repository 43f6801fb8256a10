"""A small labelled corpus of real music: consecutive excerpts of the four tracks of ../shared/data/music.

    python -m benchmarks.music_excerpts OUT [--seconds 5]

Writes OUT/corpus/<track>_<k>.mp4 (mono AAC, 44.1 kHz, no picture) and OUT/labels.csv (``clip_id,label``, the
label being the track's style: jazz, sung folk-pop, or orchestral for the two classical pieces). It is what this
machine has of real music with a label, for comparing feature sets (docs/extractors.md, "musicnn against
emobase"); excerpts of one recording fall on both sides of a fold, so a score says how well a feature set tells
these recordings' excerpts apart, not how it does on unseen songs.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from mvfx.media.decode import AudioSpec, decode
from mvfx.media.encode import write_mp4
from mvfx.media.probe import probe

MUSIC = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "music"
TRACKS = {  # file stem -> (short name, label)
    "Kevin_MacLeod_-_Vibe_Ace.hq": ("vibe_ace", "jazz"),
    "Karissa_Hobbs_-_Lets_Go_Fishin.hq": ("lets_go_fishin", "folk_pop"),
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq": ("hungarian_dance", "orchestral"),
    "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq": ("sugar_plum_fairy", "orchestral"),
}
SAMPLE_RATE = 44100


def write_excerpts(out: Path, seconds: float) -> int:
    """Every whole excerpt of ``seconds`` of each track; returns how many clips were written."""
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    rows = []
    spec = AudioSpec(SAMPLE_RATE)
    for stem, (name, label) in TRACKS.items():
        audio = decode(probe(str(MUSIC / f"{stem}.ogg")), {spec}, set()).audio[spec]
        step = int(seconds * SAMPLE_RATE)
        for k in range(len(audio) // step):
            clip_id = f"{name}_{k:02d}"
            write_mp4(out / "corpus" / f"{clip_id}.mp4", None, 25, audio[None, k * step : (k + 1) * step], SAMPLE_RATE)
            rows.append((clip_id, label))
    with open(out / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("clip_id", "label"), *rows])
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"{write_excerpts(args.out, args.seconds)} clips and labels.csv in {args.out}")


if __name__ == "__main__":
    main()
