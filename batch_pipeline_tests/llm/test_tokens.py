import socket

from batch_pipeline.llm import tokens


def test_estimate_works_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is not reachable in this test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    tokens._encoding.cache_clear()
    try:
        assert tokens._encoding() is not None  # the tables ship with the package
        assert tokens.estimate_tokens("hello world, this is a test") == 7
    finally:
        tokens._encoding.cache_clear()


def test_estimate_degrades_to_characters_without_a_tokenizer(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tokenizer(name, *args, **kwargs):
        if name == "bpe_openai":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tokenizer)
    tokens._encoding.cache_clear()
    try:
        assert tokens.estimate_tokens("x" * 400) == 101
    finally:
        tokens._encoding.cache_clear()


def test_prompt_estimate_counts_every_message():
    messages = [{"role": "system", "content": "a b c"}, {"role": "user", "content": "d e f"}]
    assert tokens.estimate_prompt_tokens(messages) == 2 * tokens.MESSAGE_OVERHEAD_TOKENS + 2 * tokens.estimate_tokens(
        "a b c"
    )
