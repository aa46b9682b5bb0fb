"""Table cells of the front (CLI table, report): bytes and counts read as integers."""

from bitnas.search.pareto import format_value


def test_whole_numbers_print_as_integers_and_other_floats_keep_their_digits():
    assert format_value(3712.0) == "3712" and format_value(7040.0) == "7040"
    assert format_value(0.9931) == "0.9931" and format_value(0.0) == "0.0000"
    assert format_value(1.0) == "1.0000"  # an accuracy of 1, beside 0.9931
    assert format_value(1.59e-6) == "1.590e-06" and format_value(2.5e9) == "2.500e+09"
    assert format_value(7) == "7" and format_value("uniform") == "uniform"
