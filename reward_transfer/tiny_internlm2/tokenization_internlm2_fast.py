"""InternLM2's fast tokenizer as its checkpoints ship it (remote code), for the tiny offline stand-in.

Written for this project after the published `tokenization_internlm2_fast.py`: no `tokenizer.json` is
shipped, so the fast tokenizer is converted from the SentencePiece model at load time by a converter
registered in transformers' `SLOW_TO_FAST_CONVERTERS`, with the added tokens written over their placeholder
pieces. The conversion uses transformers-4 APIs (`SentencePieceExtractor.extract` returning vocab and merges).
"""

from tokenizers import Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE
from transformers.convert_slow_tokenizer import SLOW_TO_FAST_CONVERTERS, SentencePieceExtractor, SpmConverter
from transformers.tokenization_utils_fast import PreTrainedTokenizerFast

from .tokenization_internlm2 import InternLM2Tokenizer

VOCAB_FILES_NAMES = {"vocab_file": "./tokenizer.model"}


class InternLM2Converter(SpmConverter):
    handle_byte_fallback = True

    def vocab(self, proto):
        return [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), *[(p.piece, p.score) for p in proto.pieces[3:]]]

    def unk_id(self, proto):
        return 0

    def decoder(self, replacement, add_prefix_space):
        return decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                  decoders.Strip(content=" ", left=1)])

    def tokenizer(self, proto):
        vocab_scores = self.vocab(proto)
        added_tokens = self.original_tokenizer.added_tokens_decoder
        for i in range(len(vocab_scores)):
            if i in added_tokens:
                vocab_scores[i] = (added_tokens[i].content, vocab_scores[i][1])
        if proto.trainer_spec.model_type != 2:
            raise RuntimeError("InternLM2 is supposed to be a BPE model!")
        _, merges = SentencePieceExtractor(self.original_tokenizer.vocab_file).extract(vocab_scores)
        bpe_vocab = {word: i for i, (word, _score) in enumerate(vocab_scores)}
        tokenizer = Tokenizer(BPE(bpe_vocab, merges, unk_token=proto.trainer_spec.unk_piece, fuse_unk=True,
                                  byte_fallback=True))
        tokenizer.add_special_tokens(list(added_tokens.values()))
        return tokenizer

    def normalizer(self, proto):
        steps = [normalizers.Prepend(prepend="▁")] if proto.normalizer_spec.add_dummy_prefix else []
        return normalizers.Sequence([*steps, normalizers.Replace(pattern=" ", content="▁")])

    def pre_tokenizer(self, replacement, add_prefix_space):
        return None


SLOW_TO_FAST_CONVERTERS["InternLM2Tokenizer"] = InternLM2Converter


class InternLM2TokenizerFast(PreTrainedTokenizerFast):
    vocab_files_names = VOCAB_FILES_NAMES
    slow_tokenizer_class = InternLM2Tokenizer
    padding_side = "left"
    model_input_names = ["input_ids", "attention_mask"]  # noqa: RUF012 (as published)
    _auto_class = "AutoTokenizer"

    def __init__(self, vocab_file, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>",
                 sp_model_kwargs=None, add_bos_token=True, add_eos_token=False, decode_with_prefix_space=False,
                 clean_up_tokenization_spaces=False, **kwargs):
        super().__init__(vocab_file=vocab_file, unk_token=unk_token, bos_token=bos_token, eos_token=eos_token,
                         pad_token=pad_token, sp_model_kwargs=sp_model_kwargs, add_bos_token=add_bos_token,
                         add_eos_token=add_eos_token, decode_with_prefix_space=decode_with_prefix_space,
                         clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
        self._add_bos_token = add_bos_token
        self._add_eos_token = add_eos_token
        self.update_post_processor()
        self.vocab_file = vocab_file

    def update_post_processor(self):
        bos, eos = self.bos_token, self.eos_token
        single = f"{(bos + ':0 ') if self._add_bos_token else ''}$A:0{(' ' + eos + ':0') if self._add_eos_token else ''}"
        pair = f"{single}{(' ' + bos + ':1') if self._add_bos_token else ''} $B:1{(' ' + eos + ':1') if self._add_eos_token else ''}"
        special = [(t, i) for t, i, on in ((bos, self.bos_token_id, self._add_bos_token),
                                           (eos, self.eos_token_id, self._add_eos_token)) if on]
        self._tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)
