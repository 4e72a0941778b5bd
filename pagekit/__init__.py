"""The page kit the store page (``edge_agent.web``) and the central's operations page
(``central.pages``) share: the base stylesheet and the login page (``static/``), the
signed session cookie, the login form's handling, static files and the offline Swagger UI.

A leaf package: it imports no package of ours, so both sides may import it.
"""
