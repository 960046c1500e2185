"""Tiny GGUF files for publish and Modelfile tests: a vocabulary, a chat template, one small tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHATML_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
                   " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                   "{% endif %}")
GEMMA_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\\n' + "
                  "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}"
                  "{{'<start_of_turn>model\\n'}}{% endif %}")
# a Qwen3-style chat template: tools with a round trip, and thinking
THINKING_JINJA = ("{%- if tools %}<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools>{% endif %}"
                  "{% for message in messages %}{% if message.tool_calls %}<tool_call>{% endif %}"
                  "{% if message.role == 'tool' %}<tool_response>{{ message.content }}</tool_response>{% endif %}"
                  "<think>{{ message.reasoning_content }}</think>{% endfor %}")
CHATML_TOKENS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
GEMMA_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


def write(path: Path, *, arch: str = "qwen2", tokens=None, chat_template: str | None = CHATML_TEMPLATE,
          extra_tensor_bytes: int = 0, seed: int = 0) -> Path:
    """A small but well-formed GGUF; ``extra_tensor_bytes`` pads it with one more F32 tensor."""
    import gguf

    tokens = list(tokens or CHATML_TOKENS) + [f"tok{i}" for i in range(60)]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("gl-tiny")
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2" if arch.startswith("qwen") else "llama")
    w.add_token_list(tokens)
    w.add_token_types([1] * len(tokens))
    w.add_bos_token_id(tokens.index("<bos>") if "<bos>" in tokens else 1)
    w.add_eos_token_id(1)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)
    w.add_tensor("token_embd.weight", rng.standard_normal((len(tokens), 32)).astype(np.float32))
    if extra_tensor_bytes:
        w.add_tensor("pad.weight", rng.standard_normal(extra_tensor_bytes // 4).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
