"""Layer 9, the web page of serve.py: the app, its pages and the search service behind them."""
