"""The small built-in corpus the tiny checkpoints' SentencePiece tokenizers are trained on.

Mixed English, Chinese, code and numbers, so the trained vocabulary has whole-word pieces,
single CJK characters, digits split one by one, and leaves rarer characters (emoji, most
CJK) to byte fallback. Written for this project; changing it changes every tiny tokenizer.
"""

from __future__ import annotations

_ENGLISH = """
The quick brown fox jumps over the lazy dog while the farmer counts his sheep.
A language model predicts the next token from the tokens that came before it.
Checkpoints are downloaded from a hub, verified with sha256, and loaded onto a GPU.
Please summarise the following paragraph in three short sentences.
The weather in Shanghai is warm and humid in summer, and cool in the autumn.
She opened the window, listened to the rain, and wrote a letter to her brother.
Mathematics asks us to prove that every even number greater than two is a sum of two primes.
The reward model scores each answer, and the better answer receives the higher score.
Users can chat with the assistant, ask questions, and request code in many languages.
Tokenizers split text into pieces; rare characters fall back to their raw bytes.
An engineer reads the error message, finds the missing file, and runs the command again.
Small models train quickly, but large models remember more of what they have read.
Every morning the baker makes bread, cakes, and cookies for the people of the town.
History, science, music, and art are all subjects that students enjoy learning about.
The train leaves the station at seven o'clock and arrives in Beijing before noon.
If the download stops halfway, the next attempt resumes from the last verified byte.
You are a helpful, honest, and harmless assistant. Answer the user's question carefully.
What is the capital of France? The capital of France is Paris.
How many legs does a spider have? A spider has eight legs.
Write a short poem about the sea, the moon, and the stars above the quiet harbour.
The system prompt tells the assistant who it is and how it should behave.
Open source software lets anyone read, change, and share the code with others.
Hello! Thank you very much. Good night, and see you tomorrow.
Think step by step, check each result, and then give the final answer.
"""

_CHINESE = """
上海人工智能实验室发布了书生浦语大模型。
今天天气很好，我们一起去公园散步吧。
请用三句话总结下面这段文字的主要内容。
模型从镜像站下载，经过校验以后加载到显卡上。
学习数学需要耐心，也需要大量的练习和思考。
你好，我是一个人工智能助手，很高兴为你服务。
这个问题的答案是四十二，但是推理过程更加重要。
北京和上海都是中国的大城市，人口众多，交通便利。
"""

_CODE = """
def add(a: int, b: int) -> int:
    return a + b

for i in range(10):
    print(i, i * i, i ** 3)

import json
data = {"name": "internlm", "layers": 32, "heads": [8, 16, 32]}
print(json.dumps(data, indent=2))

class Counter:
    def __init__(self) -> None:
        self.value = 0

    def step(self, amount: int = 1) -> int:
        self.value += amount
        return self.value

if __name__ == "__main__":
    total = sum(x for x in range(100) if x % 3 == 0)
    print(f"total = {total}")
"""

_NUMBERS = """
0 1 2 3 4 5 6 7 8 9 10 11 12 100 256 1024 2048 4096 32768 92544 128512
3.14159 2.71828 1e-5 1e6 50000000 0x1F 0xFF 2024-01-23 12:30:45
x = 7 * 6; y = x / 2; z = (x + y) % 5
"""


def corpus_lines() -> list[str]:
    """Every non-empty line of the corpus, in a fixed order."""
    text = _ENGLISH + _CHINESE + _CODE + _NUMBERS
    return [line for line in text.split("\n") if line.strip()]
