"""POLAR (reference-based) scoring on the tiny POLAR checkpoint, against an independent computation.

The reference here is written from the recipe in issue 14 (InternLM's RewardModelClient), not
from model_zoo.reward.polar: flatten each part, tokenize with bos, cut reference and output to
``max_response_length`` (left or right), cut the prompt from the left to ``(max_length - 4 -
len(reference) - len(output)) // 2``, decode without special tokens, join as ``prompt\\nreference
<|reward|>prompt\\noutput[UNUSED_TOKEN_130]``, tokenize with bos, and score with
``fixtures_reward.reference_score`` (a plain-torch forward from the packed weights, v_head at the
last token).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from fixtures_reward import conv, reference_score

from model_zoo.errors import (
    IncompatibleCheckpointError,
    InputTooLongError,
    InvalidConversationError,
    InvalidReferenceInputError,
    ScoringStyleError,
    UsageError,
)
from model_zoo.reward.api import load_reward, load_reward_codec, scoring_style
from model_zoo.reward.model import RewardModel, ranks_from_scores
from model_zoo.reward.polar import PolarOptions, PolarRewardModel, detect_style
from model_zoo.runner.tokenizer import InternLMTokenizer

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog while the farmer counts his sheep.",
    "A language model predicts the next token from the tokens that came before it.",
    "The weather in Shanghai is warm and humid in summer, and cool in the autumn.",
    "She opened the window, listened to the rain, and wrote a letter to her brother.",
    "Every morning the baker makes bread, cakes, and cookies for the people of the town.",
    "今天天气很好，我们一起去公园散步吧。",
]
LONG = " ".join(SENTENCES)  # about 100 tokens in the tiny vocabulary
SMALL = PolarOptions(max_length=64, max_response_length=12)


# ---------------------------------------------------------------------- the independent recipe


def by_hand(
    tok: InternLMTokenizer,
    prompt: Any,
    reference: Any,
    output: Any,
    *,
    max_length: int = 16384,
    max_response_length: int = 4096,
    side: str = "left",
    wrapper: str = "sft",
) -> str:
    def flat(x: Any) -> str:
        return x if isinstance(x, str) else "\n".join(m["content"] for m in x)

    p, r, o = (tok.encode(flat(x), add_special_tokens=True) for x in (prompt, reference, output))

    def cut(ids: list[int]) -> list[int]:
        if len(ids) <= max_response_length:
            return ids
        return ids[-max_response_length:] if side == "left" else ids[:max_response_length]

    r, o = cut(r), cut(o)
    keep = (max_length - 4 - len(r) - len(o)) // 2
    if len(p) > keep:
        p = p[-keep:]
    pt, rt, ot = (tok.decode(x, skip_special_tokens=True) for x in (p, r, o))
    nl = "" if wrapper == "pretrain" else "\n"
    return pt + nl + rt + "<|reward|>" + pt + nl + ot + "[UNUSED_TOKEN_130]"


def score_by_hand(path: Path, tok: InternLMTokenizer, text: str) -> float:
    ids = tok.encode(text, add_special_tokens=True)
    cfg = json.loads((path / "config.json").read_text())
    assert (
        ids[0] == tok.bos_token_id and ids[-1] == cfg["reward_token_id"]
    )  # bos first, reward token last
    assert ids.count(tok.token_to_id("<|reward|>")) == 1
    return reference_score(path, ids)


@pytest.fixture(scope="module")
def tok(tiny_polar_fp32: Path) -> InternLMTokenizer:
    return InternLMTokenizer.from_pretrained(tiny_polar_fp32)


def _close(got: Iterable[float], want: Iterable[float], tol: float = 1e-4) -> None:
    got, want = list(got), list(want)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert abs(g - w) < tol, (got, want)


# ---------------------------------------------------------------------- parity


def test_loads_as_a_polar_model(tiny_polar_rm: RewardModel, tok: InternLMTokenizer) -> None:
    assert isinstance(tiny_polar_rm, PolarRewardModel)
    assert tiny_polar_rm.scoring_style == "reference-based"
    assert tiny_polar_rm.options == PolarOptions()  # the client's defaults
    assert (tiny_polar_rm.options.max_length, tiny_polar_rm.options.max_response_length) == (
        16384,
        4096,
    )
    assert tiny_polar_rm.options.cut_side == "left"
    # the separator is POLAR's renamed reserved piece, the reward token the plain [UNUSED_TOKEN_130]
    assert tok.token_to_id("<|reward|>") == tok.sp.piece_to_id("[UNUSED_TOKEN_0]")
    assert tok.token_to_id("<|reward|>") != tiny_polar_rm.reward_token_id
    assert tok.sp.piece_to_id("[UNUSED_TOKEN_130]") == tiny_polar_rm.reward_token_id


STRING_ITEMS = [
    {"prompt": "What is the capital of France?", "reference": "Paris.", "output": "Paris."},
    {
        "prompt": "What is the capital of France?",
        "reference": "Paris.",
        "output": "The capital is Lyon.",
    },
    {
        "prompt": "How many legs does a spider have?",
        "reference": "Eight.",
        "output": "A spider has eight legs.",
    },
    {"prompt": "上海", "reference": "今天天气很好", "output": ""},
    {"prompt": "", "reference": "", "output": "Hello!"},
]


def test_strings_match_the_recipe(
    tiny_polar_rm: PolarRewardModel, tiny_polar_fp32: Path, tok: InternLMTokenizer
) -> None:
    texts = [by_hand(tok, **item) for item in STRING_ITEMS]
    assert tiny_polar_rm.render(STRING_ITEMS) == texts
    assert texts[0] == (
        "What is the capital of France?\nParis.<|reward|>"
        "What is the capital of France?\nParis.[UNUSED_TOKEN_130]"
    )
    assert tiny_polar_rm.encode_inputs(STRING_ITEMS) == [
        tok.encode(t, add_special_tokens=True) for t in texts
    ]
    want = [score_by_hand(tiny_polar_fp32, tok, t) for t in texts]
    _close(tiny_polar_rm.score_batch(STRING_ITEMS), want)
    _close([tiny_polar_rm.score(**STRING_ITEMS[1])], want[1:2])


def test_message_lists_join_contents_and_drop_roles(
    tiny_polar_rm: PolarRewardModel, tiny_polar_fp32: Path, tok: InternLMTokenizer
) -> None:
    prompt = [
        {"role": "system", "content": "You are a helpful, honest, and harmless assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    reference = [{"role": "assistant", "content": "The capital of France is Paris."}]
    output = [
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Thank you very much."},
    ]
    text = by_hand(tok, prompt, reference, output)
    assert text.startswith(
        "You are a helpful, honest, and harmless assistant.\nWhat is the capital of France?\nThe"
    )
    assert "system" not in text and "assistant" not in text.replace("harmless assistant", "")
    item = {"prompt": prompt, "reference": reference, "output": output}
    assert tiny_polar_rm.render([item]) == [text]
    (got,) = tiny_polar_rm.score_batch([item])
    _close([got], [score_by_hand(tiny_polar_fp32, tok, text)])
    # the same contents as plain strings score the same: roles play no part
    flat = {k: "\n".join(m["content"] for m in v) for k, v in item.items()}
    _close(tiny_polar_rm.score_batch([flat]), [got], tol=1e-6)
    # messages and strings may be mixed within one input
    mixed = {"prompt": prompt, "reference": flat["reference"], "output": output}
    assert tiny_polar_rm.render([mixed]) == [text]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("part", ["prompt", "reference", "output"])
def test_truncation_of_each_part(
    tiny_polar_rm: PolarRewardModel,
    tiny_polar_fp32: Path,
    tok: InternLMTokenizer,
    part: str,
    side: str,
) -> None:
    item = {
        "prompt": "What is the capital of France?",
        "reference": "Paris.",
        "output": "It is Paris.",
    }
    item[part] = LONG
    opts = SMALL.with_changes(cut_side=side)
    text = by_hand(tok, **item, max_length=64, max_response_length=12, side=side)
    assert tiny_polar_rm.render([item], options=opts) == [text]
    halves = text.removesuffix("[UNUSED_TOKEN_130]").split("<|reward|>")
    if part == "prompt":  # cut from the left whatever the side: the end of the prompt stays
        kept = halves[0].split("\n")[0]
        assert LONG.endswith(kept) and len(kept) < len(LONG) // 2
        budget = (64 - 4 - len(tok.encode("Paris.")) - len(tok.encode("It is Paris."))) // 2
        assert budget == 24 and kept == tok.decode(
            tok.encode(LONG)[-budget:], skip_special_tokens=True
        )
    else:
        kept = (halves[0] if part == "reference" else halves[1]).split("\n", 1)[1]
        assert len(kept) < len(LONG) // 2
        assert LONG.endswith(kept) if side == "left" else LONG.startswith(kept), kept
    _close(
        tiny_polar_rm.score_batch([item], options=opts), [score_by_hand(tiny_polar_fp32, tok, text)]
    )
    # nothing is cut under the default (the client's) limits
    assert LONG in tiny_polar_rm.render([item])[0]


def test_the_bos_of_each_part_counts_toward_its_limit(
    tiny_polar_rm: PolarRewardModel, tok: InternLMTokenizer
) -> None:
    """As in the client: a part's length includes its bos, so a left cut drops the bos first."""
    words = "The quick brown fox jumps over the lazy dog"
    n = len(tok.encode(words, add_special_tokens=True))  # the words and their bos
    item = {"prompt": "Hi", "reference": words, "output": words}

    def halves(limit: int, side: str) -> list[str]:
        opts = PolarOptions(max_length=64, max_response_length=limit, cut_side=side)
        text = tiny_polar_rm.render([item], options=opts)[0]
        return [
            half.split("\n", 1)[1]
            for half in text.removesuffix("[UNUSED_TOKEN_130]").split("<|reward|>")
        ]

    assert halves(n, "left") == halves(n, "right") == [words, words]
    assert halves(n - 1, "left") == [words, words]  # only the bos went
    assert halves(n - 2, "left") == ["quick brown fox jumps over the lazy dog"] * 2  # then "The"
    right = halves(n - 1, "right")  # the bos stays, the last word goes
    assert all(
        w.startswith("The quick brown fox jumps over the lazy") and not w.endswith("dog")
        for w in right
    )


@pytest.mark.parametrize("how", ["item", "options"])
def test_pretrain_wrapper_has_no_newlines(
    tiny_polar_rm: PolarRewardModel, tiny_polar_fp32: Path, tok: InternLMTokenizer, how: str
) -> None:
    item: dict[str, Any] = {"prompt": "Say hello.", "reference": "Hello!", "output": "Good night."}
    opts = None
    if how == "item":
        item["wrapper"] = "pretrain"
    else:
        opts = PolarOptions(wrapper="pretrain")
    text = by_hand(tok, item["prompt"], item["reference"], item["output"], wrapper="pretrain")
    assert text == "Say hello.Hello!<|reward|>Say hello.Good night.[UNUSED_TOKEN_130]"
    assert tiny_polar_rm.render([item], options=opts) == [text]
    got = tiny_polar_rm.score_batch([item], options=opts)
    _close(got, [score_by_hand(tiny_polar_fp32, tok, text)])
    sft = tiny_polar_rm.score_batch([{k: v for k, v in item.items() if k != "wrapper"}])
    assert abs(got[0] - sft[0]) > 1e-6  # the newlines change the score


def test_an_item_wrapper_beats_the_options_wrapper(tiny_polar_rm: PolarRewardModel) -> None:
    item = {"prompt": "a", "reference": "b", "output": "c", "wrapper": "sft"}
    assert tiny_polar_rm.render([item], options=PolarOptions(wrapper="pretrain")) == [
        "a\nb<|reward|>a\nc[UNUSED_TOKEN_130]"
    ]


def test_special_token_text_inside_a_part_is_dropped_as_the_client_does(
    tiny_polar_rm: PolarRewardModel,
) -> None:
    item = {
        "prompt": "<|im_start|>user\nHi<|im_end|>",
        "reference": "Hello<|reward|>",
        "output": "</s>Hey",
    }
    assert tiny_polar_rm.render([item]) == [
        "user\nHi\nHello<|reward|>user\nHi\nHey[UNUSED_TOKEN_130]"
    ]


def test_batches_of_mixed_lengths(
    tiny_polar_rm: PolarRewardModel, tiny_polar_fp32: Path, tok: InternLMTokenizer
) -> None:
    items = []
    for i in range(12):
        n = 1 + (i * 5) % len(SENTENCES)
        items.append(
            {
                "prompt": " ".join(SENTENCES[:n]),
                "reference": SENTENCES[i % len(SENTENCES)],
                "output": [{"role": "assistant", "content": " ".join(SENTENCES[: 1 + i % 3])}],
            }
        )
    lengths = [len(ids) for ids in tiny_polar_rm.encode_inputs(items)]
    assert max(lengths) > 3 * min(lengths)  # mixed lengths
    scorer: Any = tiny_polar_rm.scorer
    passes = scorer.forward_passes
    batched = tiny_polar_rm.score_batch(items)
    assert scorer.forward_passes - passes < len(items)  # batched, not one pass per input
    alone = [tiny_polar_rm.score(**item) for item in items]
    _close(batched, alone)
    want = [score_by_hand(tiny_polar_fp32, tok, by_hand(tok, **item)) for item in items]
    _close(batched, want)


def test_rank_order_best_of_and_compare(
    tiny_polar_rm: PolarRewardModel, tiny_polar_fp32: Path, tok: InternLMTokenizer
) -> None:
    prompt, reference = "What is the capital of France?", "The capital of France is Paris."
    outputs = ["Paris.", "Lyon.", "The capital of France is Paris.", "I do not know.", "Beijing."]
    want = [
        score_by_hand(tiny_polar_fp32, tok, by_hand(tok, prompt, reference, o)) for o in outputs
    ]
    ranks = tiny_polar_rm.rank(prompt, reference, outputs)
    assert ranks == ranks_from_scores(want)
    assert sorted(ranks) == list(range(len(outputs)))
    order = tiny_polar_rm.order(prompt, reference, outputs)
    assert [ranks[i] for i in order] == list(range(len(outputs)))
    assert tiny_polar_rm.best_of(prompt, reference, outputs) == order[0]
    items = [{"prompt": prompt, "reference": reference, "output": o} for o in outputs]
    assert tiny_polar_rm.rank(items) == ranks  # the list-of-inputs form
    assert tiny_polar_rm.compare(items[order[0]], items[order[-1]])
    assert not tiny_polar_rm.compare(items[0], items[0])  # copies tie


def test_score_text_of_a_built_text_matches(tiny_polar_rm: PolarRewardModel) -> None:
    """Already-built POLAR text (what the client sends a runtime) is tokenized with bos, as runtimes
    do."""
    items = STRING_ITEMS[:3]
    _close(
        tiny_polar_rm.score_text(tiny_polar_rm.render(items)),
        tiny_polar_rm.score_batch(items),
        tol=1e-6,
    )


def test_the_model_length_limit_still_applies(tiny_polar_rm: PolarRewardModel) -> None:
    item = {"prompt": LONG * 3, "reference": LONG, "output": LONG}
    with pytest.raises(InputTooLongError) as info:  # 512 positions in the tiny model
        tiny_polar_rm.score_batch([item])
    assert info.value.limit == tiny_polar_rm.max_length == 512
    assert (
        len(
            tiny_polar_rm.score_batch(
                [item], options=PolarOptions(max_length=400, max_response_length=100)
            )
        )
        == 1
    )


# ---------------------------------------------------------------------- the real client's encode


_XTUNER_ENCODE = r"""
import importlib.util, json, os, sys
sys.path.insert(0, sys.argv[1])
from model_zoo.runner.tokenizer import InternLMTokenizer
spec = importlib.util.find_spec("xtuner")
path = os.path.join(list(spec.submodule_search_locations)[0], "utils", "rm_utils.py")
mspec = importlib.util.spec_from_file_location("rm_utils", path)
module = importlib.util.module_from_spec(mspec)
mspec.loader.exec_module(module)
args = json.loads(sys.argv[2])
out = []
for run in args["runs"]:
    client = module.RewardModelClient.__new__(module.RewardModelClient)
    # what __init__ sets, with model-zoo's tokenizer instead of the hub's remote code
    client.tokenizer = InternLMTokenizer.from_pretrained(args["tokenizer"])
    client.max_length = run["max_length"] - 4
    client.max_response_length = run["max_response_length"]
    client.response_cut_side = run["cut_side"]
    out.append(client.encode(args["data"]))
print("ENCODED " + json.dumps(out))
"""


def test_render_equals_xtuners_own_client_encode(
    tiny_polar_rm: PolarRewardModel, tiny_polar_fp32: Path
) -> None:
    """xtuner 0.2.0's RewardModelClient.encode, run unchanged in its own venv with model-zoo's
    tokenizer, builds exactly the texts render() builds, truncation included.

    The client venv is built here when missing (tests/fixtures_polar_client.py).
    """
    from fixtures_polar_client import polar_client_python

    python = polar_client_python()
    data = [
        *STRING_ITEMS,
        {"prompt": [{"role": "user", "content": LONG}], "reference": LONG, "output": "Paris."},
        {
            "prompt": "Hi",
            "reference": "Paris.",
            "output": [{"role": "assistant", "content": LONG}],
            "wrapper": "pretrain",
        },
        {"prompt": "<|im_start|>Hi<|im_end|>", "reference": "", "output": LONG},
    ]
    runs = [
        {"max_length": 16384, "max_response_length": 4096, "cut_side": "left"},
        {"max_length": 64, "max_response_length": 12, "cut_side": "left"},
        {"max_length": 64, "max_response_length": 12, "cut_side": "right"},
    ]
    args = json.dumps({"tokenizer": str(tiny_polar_fp32), "data": data, "runs": runs})
    done = subprocess.run(
        [str(python), "-c", _XTUNER_ENCODE, str(ROOT), args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("ENCODED ")), None)
    assert line is not None, done.stdout + done.stderr
    theirs = json.loads(line.removeprefix("ENCODED "))
    for run, texts in zip(runs, theirs, strict=True):
        opts = PolarOptions(run["max_length"], run["max_response_length"], run["cut_side"])
        assert tiny_polar_rm.render(data, options=opts) == texts, run


# ---------------------------------------------------------------------- the style, and errors


def test_a_conversation_model_refuses_references(tiny_rm: RewardModel) -> None:
    assert type(tiny_rm) is RewardModel and tiny_rm.scoring_style == "conversation"
    item = {"prompt": "a", "reference": "b", "output": "c"}
    for call in (
        lambda: tiny_rm.score(prompt="a", reference="b", output="c"),
        lambda: tiny_rm.score(item),  # type: ignore[arg-type]
        lambda: tiny_rm.score_batch([item]),  # type: ignore[list-item]
        lambda: tiny_rm.rank("a", "b", ["c", "d"]),  # type: ignore[arg-type]
        lambda: tiny_rm.best_of([conv("a", "b")], reference="b"),
        lambda: tiny_rm.encode_conversations([conv("a", "b"), item]),  # type: ignore[list-item]
    ):
        with pytest.raises(ScoringStyleError) as info:
            call()
        err = info.value
        assert (err.style, err.given, err.exit_code) == ("conversation", "reference-based", 2)
        assert "takes no reference" in str(err)


def test_a_polar_model_refuses_conversations(tiny_polar_rm: PolarRewardModel) -> None:
    chat = conv("What is the capital of France?", "Paris.")
    for call in (
        lambda: tiny_polar_rm.score(chat),
        lambda: tiny_polar_rm.score_batch([chat]),
        lambda: tiny_polar_rm.rank([chat, chat]),
        lambda: tiny_polar_rm.compare(chat, chat),
        lambda: tiny_polar_rm.encode_conversations([chat]),
        lambda: tiny_polar_rm.codec.render(chat),
    ):
        with pytest.raises(ScoringStyleError) as info:
            call()
        err = info.value
        assert (err.style, err.given, err.model) == (
            "reference-based",
            "conversation",
            tiny_polar_rm.name,
        )
        assert "score(prompt=..., reference=..., output=...)" in str(err)


@pytest.mark.parametrize(
    ("item", "field", "says"),
    [
        ({"prompt": "a", "reference": "b"}, "inputs[0].output", "is missing"),
        ({"prompt": "a", "reference": 3, "output": "c"}, "inputs[0].reference", "got a int"),
        ({"prompt": None, "reference": "b", "output": "c"}, "inputs[0].prompt", "got missing"),
        (
            {"prompt": "a", "reference": "b", "output": "c", "label": 1},
            "inputs[0].label",
            "not a field",
        ),
        (
            {"prompt": "a", "reference": "b", "output": "c", "wrapper": "chat"},
            "inputs[0].wrapper",
            "sft, pretrain",
        ),
        (
            {"prompt": [{"role": "user"}], "reference": "b", "output": "c"},
            "inputs[0].prompt[0].content",
            "got missing",
        ),
        (
            {"prompt": ["hi"], "reference": "b", "output": "c"},
            "inputs[0].prompt[0]",
            "message object",
        ),
        (
            {"prompt": "a", "reference": "b", "output": "\ud800"},
            "inputs[0].output",
            "lone surrogate",
        ),
        ("just text", "inputs[0]", "got str"),
    ],
)
def test_malformed_inputs_name_the_field(
    tiny_polar_rm: PolarRewardModel, item: Any, field: str, says: str
) -> None:
    with pytest.raises(InvalidReferenceInputError) as info:
        tiny_polar_rm.score_batch([item])
    assert info.value.field == field and says in str(info.value), str(info.value)
    assert isinstance(info.value, InvalidConversationError)  # handled wherever those are
    assert "prompt" in str(info.value) and info.value.exit_code == 2


def test_call_shape_errors(tiny_polar_rm: PolarRewardModel) -> None:
    with pytest.raises(UsageError, match="output"):
        tiny_polar_rm.score(prompt="a", reference="b")
    with pytest.raises(InvalidReferenceInputError, match="list of outputs"):
        tiny_polar_rm.rank("a", "b", "c")
    with pytest.raises(UsageError, match="prompt, reference and a list of outputs"):
        tiny_polar_rm.rank("a", "b")
    with pytest.raises(InvalidReferenceInputError, match="expected a list"):
        tiny_polar_rm.score_batch({"prompt": "a", "reference": "b", "output": "c"})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="at least one output"):
        tiny_polar_rm.best_of("a", "b", [])
    assert tiny_polar_rm.score_batch([]) == []


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"cut_side": "middle"}, "cut_side must be one of left, right"),
        ({"wrapper": "chat"}, "wrapper must be one of sft, pretrain"),
        ({"max_response_length": 0}, "at least 1"),
        ({"max_length": 100, "max_response_length": 48}, "leaves the prompt no room"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        PolarOptions(**kwargs)
    PolarOptions(max_length=4 + 2 * 48 + 2, max_response_length=48)  # the smallest that works


def test_style_from_the_checkpoint_and_the_override(
    tiny_polar_fp32: Path, tiny_reward_fp32: Path
) -> None:
    polar_tok = InternLMTokenizer.from_pretrained(tiny_polar_fp32)
    reward_tok = InternLMTokenizer.from_pretrained(tiny_reward_fp32)
    rid = reward_tok.token_to_id("[UNUSED_TOKEN_130]")
    assert rid is not None
    assert detect_style(polar_tok, rid) == "reference-based"
    assert detect_style(reward_tok, rid) == "conversation"
    # a checkpoint whose tokenizer names the reward token itself <|reward|> is not POLAR
    renamed = InternLMTokenizer(
        tiny_reward_fp32 / "tokenizer.model",
        {
            "added_tokens_decoder": {str(rid): {"content": "<|reward|>", "special": True}},
        },
    )
    assert detect_style(renamed, rid) == "conversation"
    as_chat = load_reward(tiny_polar_fp32, device="cpu", dtype="float32", style="conversation")
    assert type(as_chat) is RewardModel


def test_style_from_the_registry_beats_the_checkpoint(
    tiny_polar_fp32: Path, tiny_reward_fp32: Path
) -> None:
    from model_zoo.registry.api import get

    polar_tok = InternLMTokenizer.from_pretrained(tiny_polar_fp32)
    reward_tok = InternLMTokenizer.from_pretrained(tiny_reward_fp32)
    rid = int(json.loads((tiny_polar_fp32 / "config.json").read_text())["reward_token_id"])
    assert (
        scoring_style(None, get("POLAR-7B"), polar_tok, rid, tiny_polar_fp32) == "reference-based"
    )
    assert (
        scoring_style(None, get("InternLM2-7B-Reward"), polar_tok, rid, tiny_polar_fp32)
        == "conversation"
    )
    assert (
        scoring_style("conversation", get("POLAR-7B"), polar_tok, rid, tiny_polar_fp32)
        == "conversation"
    )
    with pytest.raises(IncompatibleCheckpointError, match="no <\\|reward\\|> token"):
        scoring_style(None, get("POLAR-7B"), reward_tok, rid, tiny_reward_fp32)


def test_loader_errors(tiny_polar_fp32: Path, tiny_reward_fp32: Path) -> None:
    with pytest.raises(IncompatibleCheckpointError, match="no <\\|reward\\|> token") as info:
        load_reward(tiny_reward_fp32, device="cpu", style="reference-based")
    assert "style='conversation'" in str(info.value)
    with pytest.raises(UsageError, match="style must be one of conversation, reference-based"):
        load_reward(tiny_polar_fp32, device="cpu", style="polar")
    with pytest.raises(UsageError, match="reference_options apply to reference-based"):
        load_reward(tiny_reward_fp32, device="cpu", reference_options=SMALL)
    with pytest.raises(IncompatibleCheckpointError, match="Ray pool"):
        load_reward_codec(tiny_polar_fp32)
    rm = load_reward(tiny_polar_fp32, device="cpu", dtype="float32", reference_options=SMALL)
    assert isinstance(rm, PolarRewardModel) and rm.options == SMALL


def test_render_needs_no_torch(tiny_polar_fp32: Path) -> None:
    """The encoding runs without torch (a server's or a data pipeline's process)."""
    code = (
        "import sys, json\n"
        "from model_zoo.runner.tokenizer import InternLMTokenizer\n"
        "from model_zoo.reward.polar import PolarOptions, check_reference_input, render\n"
        f"tok = InternLMTokenizer.from_pretrained({str(tiny_polar_fp32)!r})\n"
        "item = check_reference_input({'prompt': 'a', 'reference': 'b', 'output': 'c'})\n"
        "print(json.dumps([render(item, tok, PolarOptions()), 'torch' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == ["a\nb<|reward|>a\nc[UNUSED_TOKEN_130]", False]


def test_registry_names_pull_and_load_with_the_registrys_style(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the local hub: a POLAR name loads as POLAR; the registry's style decides over the
    checkpoint's (a POLAR name without the separator is refused before its weights load, and a
    conversation model's name stays conversation even with POLAR's tokenizer)."""
    from model_zoo.testing.local_hub import LocalHub
    from model_zoo.testing.tiny_hub import make_hub_tree, registry_repos

    repos = registry_repos("POLAR-1.8B")
    assert set(repos.values()) == {"polar"}  # the hub tree builds POLAR's tokenizer for POLAR names
    repos |= {repo: "internlm2-reward" for repo in registry_repos("POLAR-1.8B-Base")}
    repos |= {repo: "polar" for repo in registry_repos("InternLM2-1.8B-Reward")}
    make_hub_tree(tmp_path / "hub", repos)
    hub = LocalHub(tmp_path / "hub").start()
    try:
        for key, value in hub.env().items():
            monkeypatch.setenv(key, value)
        polar = load_reward("polar-1.8b", device="cpu", dtype="float32")
        with pytest.raises(IncompatibleCheckpointError, match="no <\\|reward\\|> token"):
            load_reward("POLAR-1.8B-Base", device="cpu", dtype="float32")
        chat = load_reward("internlm2-1_8b-reward", device="cpu", dtype="float32")
    finally:
        hub.stop()
    assert isinstance(polar, PolarRewardModel) and polar.name == "POLAR-1.8B"
    assert len(polar.score_batch([{"prompt": "a", "reference": "b", "output": "c"}])) == 1
    assert type(chat) is RewardModel and chat.name == "InternLM2-1.8B-Reward"
