"""companion: the tested code that the chapters of "From RNN to Transformer" import.

Modules, in the order the book uses them: ``device`` and ``reproducibility`` (where and how a result was made, and the
benchmarks' results files written and read with the same metadata),
``data`` (tokens, corpora, translation pairs, time series, synthetic tasks, batching), ``training`` (the Trainer),
``metrics`` (accuracy, perplexity, exact match, sacreBLEU's BLEU and chrF) and ``plotting``. Model modules join as
their chapters are written: ``recurrent_cells`` and ``language_models`` (Part I), ``seq2seq`` (the encoder-decoder),
``decoding`` (greedy, sampling, beam and exact search) and ``translation_task`` (the translation task's data, recipe
and scores) for Part III; Part IV's are ``masks`` (True = may attend), ``attention``, ``attention_seq2seq`` (Chapter
7: a score in the seq2seq model's attention slot) and ``positions``; Part V's ``transformer`` (the encoder-decoder,
its layers and the KV cache) and ``pretraining`` (GPT and BERT); Chapter 12's ``modern_recurrent`` (minGRU, and
linear attention as an RNN). The appendices add ``claims`` (the claim boxes of
the pages, collected) and ``distributed`` (data-parallel training with torch.distributed).
``translation_task.WordLookup`` is the translation task's cheap baseline (a word-for-word dictionary).
"""

from companion.device import pick_device
from companion.reproducibility import environment_report, seed_everything

__all__ = ["environment_report", "pick_device", "seed_everything"]
__version__ = "0.1.0"
