"""The store's fulfilment queue for online orders (issue 15): central assigns an order with
a reservation (``order.assign``), a clerk accepts or rejects it, picks it by scanning,
packs it, marks it ready and hands it over or ships it, each step one ledger fact.

``machine`` holds the rules (pure), ``store`` the ledger ops and reads, ``service`` the
async operations, ``api`` the HTTP routes, ``scanning`` a scanner in ``pick`` mode.
"""
