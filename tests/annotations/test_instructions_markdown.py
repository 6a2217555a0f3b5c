"""Project instructions are Markdown, shown to experts as HTML with nothing a hostile manager could run."""
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from annotations.templatetags.markdown import markdown_filter
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_markdown_renders_the_usual_formatting():
    html = markdown_filter("# Rules\n\n- **Cat** if ears are pointed\n- see [guide](https://example.org/g)\n\n"
                           "| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<h1>Rules</h1>" in html and "<strong>Cat</strong>" in html and "<li>" in html
    assert 'href="https://example.org/g"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert "<table>" in html and "<td>2</td>" in html


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "![tracker](https://evil.example/pixel.png)",
    '<a href="https://x" onclick="alert(1)">x</a>',
])
def test_markdown_keeps_out_scripts_handlers_and_images(hostile):
    tags = _tags(markdown_filter(hostile))
    assert not {tag for tag, _ in tags} & {"script", "img"}
    attributes = {name: value or "" for _, attrs in tags for name, value in attrs}
    assert not [name for name in attributes if name.startswith("on")]
    assert not attributes.get("href", "").startswith("javascript:")


def _tags(html: str) -> list[tuple[str, list]]:
    """The elements the browser would build from this HTML (escaped text is text, not a tag)."""
    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


def test_experts_see_the_instructions_rendered(client):
    project = ProjectFactory(instructions="Mark **urgent** findings.\n\n<script>alert(1)</script>")
    expert = MembershipFactory(project=project, role="annotator").user
    client.force_login(expert)
    for url in (reverse("label", args=[project.pk]), reverse("project-detail", args=[project.pk])):
        page = client.get(url).content.decode()
        assert "Mark <strong>urgent</strong> findings." in page
        assert "<script>alert(1)</script>" not in page
