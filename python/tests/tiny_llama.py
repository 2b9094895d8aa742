"""A tiny llama model with random weights, written as GGUF with the `gguf` package, for
a real inference server (llama-cpp-python) to serve in the gateway's tests and
benchmark: real tokenisation and real streaming, meaningless text. No weights are
downloaded."""

from pathlib import Path

import numpy as np


def write(path: Path, dim: int = 64, layers: int = 2, heads: int = 4, ff: int = 128, seed: int = 7) -> Path:
    import gguf

    rng = np.random.default_rng(seed)
    # A SentencePiece-style vocabulary: control tokens, every byte (byte fallback),
    # then a few word pieces.
    tokens = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>".encode())
        types.append(gguf.TokenType.BYTE)
    words = ["▁the", "▁a", "▁model", "▁is", "▁audit", "▁log", "▁secret", "▁weights", "e", "s", "t", "▁"]
    words += [chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) not in words]
    for w in words:
        tokens.append(w.encode())
        types.append(gguf.TokenType.NORMAL)
    vocab = len(tokens)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(words))]

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("warden-tiny-random")
    w.add_context_length(512)
    w.add_embedding_length(dim)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_dimension_count(dim // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    )

    def t(name, *shape):
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))

    t("token_embd.weight", vocab, dim)
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(dim, dtype=np.float32))
        t(f"blk.{i}.attn_q.weight", dim, dim)
        t(f"blk.{i}.attn_k.weight", dim, dim)
        t(f"blk.{i}.attn_v.weight", dim, dim)
        t(f"blk.{i}.attn_output.weight", dim, dim)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(dim, dtype=np.float32))
        t(f"blk.{i}.ffn_gate.weight", ff, dim)
        t(f"blk.{i}.ffn_up.weight", ff, dim)
        t(f"blk.{i}.ffn_down.weight", dim, ff)
    w.add_tensor("output_norm.weight", np.ones(dim, dtype=np.float32))
    t("output.weight", vocab, dim)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


if __name__ == "__main__":
    import sys

    print(write(Path(sys.argv[1])))
