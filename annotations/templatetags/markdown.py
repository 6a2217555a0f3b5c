"""The ``markdown`` filter: a manager's Markdown (project instructions) as safe HTML."""
from django import template
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# What instructions may use: text formatting, lists, headings, quotes, code, tables and links.
# Images are left out (a manager's text must not make experts' browsers fetch other sites).
ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "del",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    """Render CommonMark with raw HTML disabled, then keep only ALLOWED_TAGS (nh3); links open as plain links."""
    import nh3
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough").render(text or "")
    clean = nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES,
                      link_rel="noopener noreferrer nofollow")
    return mark_safe(clean)  # noqa: S308 - sanitised by nh3 just above
