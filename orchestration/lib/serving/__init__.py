"""Scoring with the champion, online features, the serving snapshot, the prediction log."""
