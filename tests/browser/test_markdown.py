"""Markdown in the browser (static/markdown.js): a streaming answer rendered block by
block looks exactly like the same text rendered at once, finished blocks are rendered
once, and code is highlighted and framed with a copy button."""

import pytest

CORPUS = """# A heading with **bold** and `code`

A first paragraph that goes on
over a lazy second line, with a [link](https://example.com) and *emphasis*.

Setext heading
==============

- one item
- two items with `inline`

- a loose item after a blank line

1. first
2. second
   continued inside the item

> a quote
> over two lines

```python
def greet(name):
    # say hello
    return f"hello {name}"
```

    indented code

    more indented code after a blank line

| a | b |
|---|---|
| 1 | 2 |
| 3 | 4 |

```
no language here
```

Tom &amp; Jerry, 2 * 3 * 4, snake_case_word.

***

Last paragraph.
"""


def load(page, server):
    page.goto(f"{server.url}/")
    page.wait_for_selector("[data-testid=composer-input]")


@pytest.mark.parametrize("step", [1, 7, 40])
def test_streaming_in_pieces_renders_like_the_text_at_once(server, new_page, step):
    """After every delta the incremental rendering equals a fresh render of the text so
    far, and the finished rendering equals the whole text rendered at once."""
    page = new_page()
    load(page, server)
    result = page.evaluate(
        """async ([source, step]) => {
            const { updateMarkdown } = await import('/static/markdown.js');
            // Finished blocks sit in wrappers of fifty: compare the blocks themselves.
            const blocks = (box) => {
                const copy = box.cloneNode(true);
                for (const chunk of copy.querySelectorAll('.md-chunk')) chunk.replaceWith(...chunk.childNodes);
                return copy.innerHTML;
            };
            const live = document.createElement('div');
            const mismatches = [];
            for (let end = step; end < source.length + step; end += step) {
                const prefix = source.slice(0, end);
                updateMarkdown(live, prefix, { streaming: true });
                const whole = document.createElement('div');
                updateMarkdown(whole, prefix, { streaming: false });
                if (blocks(live) !== blocks(whole)) mismatches.push([end, blocks(live), blocks(whole)]);
            }
            updateMarkdown(live, source, { streaming: false });
            const whole = document.createElement('div');
            updateMarkdown(whole, source, { streaming: false });
            return { mismatches, same: live.innerHTML === whole.innerHTML,
                     blocks: whole.querySelectorAll('.md-chunk > *').length, text: whole.textContent };
        }""",
        [CORPUS, step],
    )
    assert result["mismatches"][:1] == []
    assert result["same"]
    assert result["blocks"] >= 13
    assert "Setext heading" in result["text"] and "Last paragraph." in result["text"]


def test_finished_blocks_are_rendered_once_and_only_the_last_block_again(server, new_page):
    page = new_page()
    load(page, server)
    result = page.evaluate(
        """async () => {
            const { updateMarkdown } = await import('/static/markdown.js');
            const box = document.createElement('div');
            let source = '# Title\\n\\nFirst paragraph.\\n\\n';
            updateMarkdown(box, source + 'Second', { streaming: true });
            const heading = box.querySelector('h1');
            const first = box.querySelectorAll('p')[0];
            const growing = box.querySelectorAll('p')[1];
            updateMarkdown(box, source + 'Second paragraph grows', { streaming: true });
            const after = box.querySelectorAll('p');
            return {
                headingKept: box.querySelector('h1') === heading,
                firstKept: after[0] === first,
                lastReplaced: after[1] !== growing,
                lastText: after[1].textContent,
            };
        }""")
    assert result == {"headingKept": True, "firstKept": True, "lastReplaced": True, "lastText": "Second paragraph grows"}


def test_a_long_answer_keeps_few_boxes_at_the_top(server, new_page):
    """Layout visits the container's children on every frame: finished blocks are grouped,
    so a 600-block answer is a dozen children, and each group is built once."""
    page = new_page()
    load(page, server)
    result = page.evaluate(
        """async () => {
            const { updateMarkdown } = await import('/static/markdown.js');
            const box = document.createElement('div');
            let source = '';
            let firstChunk = null;
            for (let index = 0; index < 600; index++) {
                source += `Paragraph ${index} of the answer.\n\n`;
                updateMarkdown(box, source + 'still growing', { streaming: true });
                firstChunk ??= box.querySelector('.md-chunk');
            }
            return {
                children: box.children.length,
                chunks: box.querySelectorAll(':scope > .md-chunk').length,
                paragraphs: box.querySelectorAll('p').length,
                firstKept: box.firstElementChild === firstChunk,
                last: box.lastElementChild.textContent,
            };
        }""")
    assert result == {"children": 13, "chunks": 12, "paragraphs": 601, "firstKept": True, "last": "still growing"}


def test_a_rewritten_text_is_rendered_from_scratch(server, new_page):
    """Text that does not continue what is shown (never while a turn streams, but cheap to
    guard) is not patched onto the old blocks."""
    page = new_page()
    load(page, server)
    html = page.evaluate(
        """async () => {
            const { updateMarkdown } = await import('/static/markdown.js');
            const box = document.createElement('div');
            updateMarkdown(box, 'alpha\\n\\nbeta\\n\\ngamma', { streaming: true });
            updateMarkdown(box, 'other\\n\\ntext\\n\\nentirely', { streaming: true });
            return box.textContent.replace(/\\s+/g, ' ').trim();
        }""")
    assert html == "other text entirely"


def test_code_is_highlighted_and_framed_with_a_copy_button(server, new_page):
    page = new_page()
    load(page, server)
    result = page.evaluate(
        """async () => {
            const { updateMarkdown } = await import('/static/markdown.js');
            const box = document.createElement('div');
            updateMarkdown(box, '```python\\ndef f(x):\\n    return x + 1\\n```\\n\\n```\\nplain <b>text</b>\\n```\\n');
            const blocks = [...box.querySelectorAll('[data-testid=code-block]')];
            return blocks.map((block) => ({
                language: block.querySelector('.code-language').textContent,
                keywords: [...block.querySelectorAll('.hljs-keyword')].map((node) => node.textContent),
                code: block.querySelector('pre code').textContent,
                button: block.querySelector('button[data-action=copy-code]').getAttribute('aria-label'),
                bold: block.querySelector('b') !== null,
            }));
        }""")
    assert result == [
        {"language": "python", "keywords": ["def", "return"], "code": "def f(x):\n    return x + 1",
         "button": "Copy python code", "bold": False},
        {"language": "text", "keywords": [], "code": "plain <b>text</b>", "button": "Copy code", "bold": False},
    ]


def test_markdown_from_the_model_cannot_inject_script(server, new_page):
    page = new_page()
    load(page, server)
    result = page.evaluate(
        """async () => {
            const { updateMarkdown } = await import('/static/markdown.js');
            const box = document.createElement('div');
            const evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>[x](javascript:alert(1))';
            updateMarkdown(box, evil, { streaming: true });
            const streamed = box.innerHTML;
            updateMarkdown(box, evil, { streaming: false });
            return { streamed, finished: box.innerHTML };
        }""")
    for html in result.values():
        assert "onerror" not in html and "<script" not in html and "javascript:" not in html
