"""How the pages write counts: the noun agrees with the number."""

from __future__ import annotations

from tollgate.web.pages import counted, templates


def test_a_count_takes_the_singular_noun_for_one_and_the_plural_for_any_other_number() -> None:
    written = [counted(n, "call") for n in (0, 1, 2, -1)]
    page = templates.env.from_string(
        '{{ 1 | counted("tool") }} priced on its own; {{ 3 | counted("entry", "entries") }}; '
        '{{ "call" | plural(1) }}'
    ).render()

    assert written == ["0 calls", "1 call", "2 calls", "-1 call"]
    assert page == "1 tool priced on its own; 3 entries; call"
