"""How a page is read around the engine: turned upright (orientation.py), cut into page-shaped
tiles when it is a long scan (tiling.py), and its lines mapped back to the page as the client
sent it (geometry.py); page.py puts these together."""
