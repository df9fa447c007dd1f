from django import template
from django.utils.safestring import SafeString

from marketplace.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    """{{ listing.description|markdown }}: safe HTML from a creator's Markdown."""
    return render_markdown(text)
