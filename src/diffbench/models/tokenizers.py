"""Offline tokenizer files for the fixtures: CLIP from open-clip's BPE table, a stand-in T5 trained locally."""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import logging
import shutil
import string
from pathlib import Path

from diffbench.models.fixture_files import fixtures_dir

logger = logging.getLogger(__name__)

#: CLIP's vocabulary: 256 byte symbols, the same with "</w>", 48,894 merges, then the two special tokens.
CLIP_MERGE_COUNT = 49152 - 256 - 2
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
#: SDXL's and SD3's second (OpenCLIP bigG) tokenizer pads with "!" (id 0) instead of "<|endoftext|>".
CLIP_PAD_BY_FOLDER = {"clip": CLIP_EOS, "clip-g": "!"}
#: Folders that hold only configs; the vocabulary files come from the named folder (committed once).
SHARED_FILES_FROM = {"clip-g": "clip"}

T5_SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in T5
T5_EXTRA_IDS = 100
T5_TRAINED_VOCAB_SIZE = 8000  # pieces incl. the 3 specials; + 100 sentinels = 8100 < 32128
T5_MAX_WORDS = 40000
T5_SCORE_DECIMALS = 4


def open_clip_bpe_path() -> Path:
    """The BPE merge table shipped in the open-clip-torch wheel (found without importing open_clip)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "open_clip is needed to regenerate the tokenizer files: pip install --no-deps open-clip-torch"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters, in the order CLIP numbers them."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    byte_values, code_points, extra = printable[:], printable[:], 0
    for byte in range(256):
        if byte not in byte_values:
            byte_values.append(byte)
            code_points.append(256 + extra)
            extra += 1
    return dict(zip(byte_values, map(chr, code_points)))


def read_bpe_merges(bpe_path: Path) -> list[str]:
    """All merge lines ("a b") of the open-clip table, header dropped."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    return [line for line in lines[1:] if line]


def clip_vocab_and_merges(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """CLIP's token -> id map and merge list, built exactly as OpenAI's SimpleTokenizer builds them."""
    merges = read_bpe_merges(bpe_path)[:CLIP_MERGE_COUNT]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in merges] + [CLIP_BOS, CLIP_EOS]
    return {token: index for index, token in enumerate(tokens)}, merges


def clip_tokenizer_config(pad_token: str) -> dict:
    """tokenizer_config.json of the hub's CLIP tokenizers (only the padding token differs)."""
    return {
        "add_prefix_space": False,
        "bos_token": CLIP_BOS,
        "clean_up_tokenization_spaces": False,  # transformers 5 warns that it would corrupt BPE output
        "do_lower_case": True,
        "eos_token": CLIP_EOS,
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": CLIP_EOS,
    }


def write_json(path: Path, data: dict) -> None:
    """Write JSON the way the fixtures are committed: sorted keys, two-space indent, final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_clip_tokenizers(tokenizers_dir: Path, bpe_path: Path) -> None:
    """Write clip/ (vocabulary, merges, configs) and clip-g/ (configs only)."""
    vocab, merges = clip_vocab_and_merges(bpe_path)
    clip_dir = tokenizers_dir / "clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    (clip_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (clip_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    for folder, pad_token in CLIP_PAD_BY_FOLDER.items():
        special = {"bos_token": CLIP_BOS, "eos_token": CLIP_EOS, "pad_token": pad_token, "unk_token": CLIP_EOS}
        write_json(tokenizers_dir / folder / "tokenizer_config.json", clip_tokenizer_config(pad_token))
        write_json(tokenizers_dir / folder / "special_tokens_map.json", special)


def t5_training_words(bpe_path: Path) -> list[str]:
    """Training text for the stand-in T5: printable ASCII characters, then CLIP's whole words by frequency."""
    words = [character for character in string.printable if not character.isspace()]
    for merge in read_bpe_merges(bpe_path):
        token = merge.replace(" ", "")
        if token.endswith("</w>") and token[:-4].isascii() and token[:-4].isalpha():
            words.append(token[:-4])
    return words[: len(string.printable) + T5_MAX_WORDS]


def train_t5_tokenizer(words: list[str]):
    """A T5-shaped Unigram tokenizer (pad 0, eos 1, unk 2, sentinels last) trained on words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    def metaspace_split():
        return pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
        )

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = metaspace_split()
    trainer = trainers.UnigramTrainer(
        vocab_size=T5_TRAINED_VOCAB_SIZE, special_tokens=T5_SPECIAL_TOKENS, unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(words, trainer=trainer)
    trained = json.loads(tokenizer.to_str())["model"]["vocab"][len(T5_SPECIAL_TOKENS) :]
    # The trainer's scores vary in the 11th decimal and its order of ties from run to run: round and sort
    # so that regenerating gives the same file.
    scored = sorted((-round(score, T5_SCORE_DECIMALS), piece) for piece, score in trained)
    pieces = [[token, 0.0] for token in T5_SPECIAL_TOKENS] + [[piece, -score] for score, piece in scored]
    # T5 numbers its sentinels downwards from the top of the vocabulary: <extra_id_0> gets the largest id.
    pieces += [[f"<extra_id_{index}>", 0.0] for index in reversed(range(T5_EXTRA_IDS))]
    result = Tokenizer(models.Unigram([tuple(piece) for piece in pieces], unk_id=2))
    result.pre_tokenizer = metaspace_split()
    result.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    result.add_special_tokens(T5_SPECIAL_TOKENS + [f"<extra_id_{index}>" for index in range(T5_EXTRA_IDS)])
    result.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return result


def write_t5_tokenizer(tokenizers_dir: Path, bpe_path: Path) -> None:
    """Write t5/: tokenizer.json and the configs T5Tokenizer(Fast) loads offline."""
    t5_dir = tokenizers_dir / "t5"
    t5_dir.mkdir(parents=True, exist_ok=True)
    train_t5_tokenizer(t5_training_words(bpe_path)).save(str(t5_dir / "tokenizer.json"), pretty=False)
    special = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    config = {**special, "clean_up_tokenization_spaces": True, "extra_ids": T5_EXTRA_IDS}
    config.update({"model_max_length": 512, "tokenizer_class": "T5Tokenizer"})
    write_json(t5_dir / "tokenizer_config.json", config)
    write_json(t5_dir / "special_tokens_map.json", special)


def generate_tokenizer_files(tokenizers_dir: Path, bpe_path: Path | None = None) -> None:
    """(Re)generate every committed tokenizer file under tokenizers_dir."""
    bpe_path = bpe_path or open_clip_bpe_path()
    logger.info("writing CLIP tokenizers from %s to %s", bpe_path, tokenizers_dir)
    write_clip_tokenizers(tokenizers_dir, bpe_path)
    logger.info("training the stand-in T5 tokenizer")
    write_t5_tokenizer(tokenizers_dir, bpe_path)


def copy_tokenizer(name: str, dest: Path, tokenizers_dir: Path) -> Path:
    """Assemble a complete tokenizer folder at dest: shared vocabulary files first, then name's own files."""
    source = tokenizers_dir / name
    if not source.is_dir():
        valid = sorted(path.name for path in tokenizers_dir.iterdir() if path.is_dir())
        raise FileNotFoundError(f"no tokenizer {name!r} in {tokenizers_dir}; valid: {valid}")
    dest.mkdir(parents=True, exist_ok=True)
    for folder in [SHARED_FILES_FROM.get(name), name]:
        for path in sorted((tokenizers_dir / folder).iterdir()) if folder else []:
            if path.is_file():
                shutil.copyfile(path, dest / path.name)
    return dest


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m diffbench.models.tokenizers [--dest DIR]."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--dest", type=Path, default=None, help="default: <fixtures>/tokenizers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_tokenizer_files(args.dest or fixtures_dir() / "tokenizers")


if __name__ == "__main__":
    main()
