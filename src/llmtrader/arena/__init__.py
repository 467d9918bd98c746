"""Arenas: several models stepped through exactly the same history, judged side by side.

Each contestant is a backtest run (:mod:`llmtrader.backtest.replay`) with the same candles, strategy, limits, fees
and starting balance; the baseline always takes part, as the yardstick, beside equal-weight buy-and-hold and
flat (cash). Every answer is recorded, so an arena run again replays them for free, a new model joins by
running alone, and other limits or another strategy re-judge the recorded answers (:mod:`.run`). The
leaderboard, with a bootstrap over days saying which edges are distinguishable from noise, is :mod:`.board`;
the terminal chart and the HTML report are :mod:`.figures`.
"""
