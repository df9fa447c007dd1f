"""Creators' Markdown becomes safe HTML: formatting survives, scripts and hostile links do not."""

from __future__ import annotations

from marketplace.markdown import render_markdown


def test_formatting_survives() -> None:
    html = render_markdown(
        "# Title\n\n**Bold** and `code`\n\n- one\n- two\n\n[docs](https://example.com)"
    )
    assert "<h2>Title</h2>" in html  # the page's h1 is the listing title
    assert "<strong>Bold</strong>" in html
    assert "<code>code</code>" in html
    assert "<li>one</li>" in html
    assert 'href="https://example.com"' in html
    assert 'rel="nofollow noopener noreferrer"' in html


def test_raw_html_and_scripts_are_escaped_not_run() -> None:
    html = render_markdown('<script>alert(1)</script>\n\n<img src=x onerror="alert(2)">')
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html  # shown as text


def test_javascript_links_are_dropped() -> None:
    html = render_markdown("[click](javascript:alert(1)) [data](data:text/html,hi)")
    assert "<a" not in html  # left as plain text, never a link
    assert "href" not in html
    assert "click" in html


def test_prices_read_as_money() -> None:
    from marketplace.models import Listing
    from marketplace.templatetags.marketplace import price_filter

    assert price_filter(Listing(pricing="free")) == "Free"
    assert price_filter(Listing(pricing="one_time", price_cents=1900)) == "$19.00"
    assert price_filter(Listing(pricing="per_run", price_cents=25)) == "$0.25 per run"


def test_example_inputs_read_as_text() -> None:
    from marketplace.templatetags.marketplace import example_text

    assert example_text({"message": "Where is my order?"}) == "Where is my order?"
    assert example_text({"ticket": "x", "customer": "y"}) == '{"ticket": "x", "customer": "y"}'
