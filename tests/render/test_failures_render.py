"""The failure sections seen from the front page and the explorer: the overview's "Where it fails" card reads the
corruptions / slices / data_issues results (only those that ran) and links them; the explorer gets a slice number
and a suspected-label-error flag per image."""

from __future__ import annotations

from reportgen.render.failures import explorer_columns, failure_facts
from reportgen.report import Note, Report, Section


def _sections():
    cor = Section(id="corruptions", title="Corruptions", results={
        "per_corruption": [], "most_fragile": "gaussian_noise", "mildest_flips": [{"image": "a.png"}] * 3,
        "images": 10})
    sl = Section(id="slices", title="Failure slices", results={
        "slices": [{"size": 2, "accuracy": 0.0, "rest_accuracy": 0.9, "mean_confidence": 0.4, "p_value": 0.01,
                    "top_true_classes": [["cat", 2]], "top_predicted_classes": [["dog", 2]],
                    "images": ["a.png", "b.png"]},
                   {"size": 2, "accuracy": 0.5, "rest_accuracy": 0.9, "mean_confidence": 0.5, "p_value": 0.04,
                    "top_true_classes": [["car", 2]], "top_predicted_classes": [["bus", 2]],
                    "images": ["b.png", "c.png"]}],
        "candidates": 8, "labelled": True, "alpha": 0.05})
    di = Section(id="data_issues", title="Data issues", results={
        "exact_duplicates": [], "near_duplicates": [{"a": "a.png", "b": "d.png", "similarity": 0.99}],
        "label_issues": [{"image": "d.png", "given": "cat", "likely": "dog", "self_confidence": 0.01}],
        "counts": {"exact_duplicates": 0, "near_duplicates": 1, "label_issues": 1}})
    return [cor, sl, di]


def test_failure_facts_name_the_mildest_flips_the_worst_slice_and_the_label_errors():
    facts = {label: (value, sid) for label, value, sid in failure_facts(Report(title="T", sections=_sections()))}
    assert facts["Flip under the mildest shift"] == ("3 of 10 images", "corruptions")
    assert facts["Most fragile to"][0] == "gaussian_noise"
    assert facts["Worst slice"] == ("2 images, accuracy 0.00 vs 0.90, mostly cat", "slices")
    assert facts["Suspected label errors"] == ("1", "data_issues")
    assert facts["Duplicates in the set"][0] == "0 exact, 1 near"


def test_only_sections_that_ran_count():
    secs = _sections()
    secs[0].error = "boom"  # a failed corruptions section says nothing
    sl = Section(id="slices", title="Failure slices", results={"slices": [], "candidates": 5, "labelled": True})
    facts = dict((a, b) for a, b, _ in failure_facts(Report(title="T", sections=[secs[0], sl])))
    assert facts == {"Failure slices": "none significant (5 tested)"}
    assert failure_facts(Report(title="T", sections=[Section(id="card", title="Card")])) == []


def test_explorer_columns_mark_slices_and_suspects_by_file_name():
    cols = explorer_columns(_sections(), ["a.png", "b.png", "c.png", "d.png", "e.png"])
    assert cols["slice"].tolist() == [1, 1, 2, 0, 0]  # b.png is in both: the worse slice (1) wins
    assert cols["suspect"].tolist() == [0, 0, 0, 1, 0]
    assert explorer_columns([Section(id="slices", title="s", results={"slices": []})], ["a.png"]) == {}


def test_overview_shows_the_card_with_links(tmp_path):
    from reportgen.render import render_report

    secs = _sections()
    for s in secs:
        s.add(Note("x"))
    render_report(Report(title="T", sections=secs), tmp_path / "out")
    html = (tmp_path / "out" / "index.html").read_text()
    assert "Where it fails" in html and "Suspected label errors" in html
    assert 'href="sections/slices.html"' in html and "mostly cat" in html
