"""Stand-in for torchaudio (no build for torch 2.13 exists): LLaMA-Factory imports it at module level and
uses it only to decode audio inputs, which a text SFT run never has."""


def load(*args, **kwargs):
    raise RuntimeError("torchaudio stand-in: audio inputs are not supported in this benchmark")
