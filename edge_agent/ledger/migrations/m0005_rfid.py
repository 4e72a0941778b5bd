"""Item-level RFID: the EPCs seen on the floor (with their last zone), the EPCs sold (and
returned), RFID count sessions, per-SKU count accuracy, the tags read into a till's
basket, and the last exit alert per tag.

Merchandise EPCs (SGTIN-96) are not personal data; still, no table here holds a shopper
identifier (no visitor pseudonym, no customer), so an EPC is never linked to a shopper.
``rfid_floor`` and ``rfid_sold`` are bounded (``rfid.max_*_epcs``) and kept
``rfid.retention_days``. Times are Unix seconds (REAL) unless named ``*_ts`` (RFC 3339).
"""

VERSION = 5

SQL = """
CREATE TABLE rfid_floor (
    epc       TEXT PRIMARY KEY,
    gtin      TEXT NOT NULL,
    sku       TEXT,
    zone      TEXT NOT NULL,
    last_seen REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX rfid_floor_last_seen ON rfid_floor (last_seen);

CREATE TABLE rfid_sold (
    epc         TEXT PRIMARY KEY,
    gtin        TEXT NOT NULL,
    sku         TEXT NOT NULL,
    sale_id     TEXT NOT NULL,
    sold_at     REAL NOT NULL,
    returned_at REAL,
    return_id   TEXT
) WITHOUT ROWID;
CREATE INDEX rfid_sold_sold_at ON rfid_sold (sold_at);

CREATE TABLE rfid_counts (
    count_id  TEXT PRIMARY KEY,
    zones     TEXT,
    status    TEXT NOT NULL,
    opened_at REAL NOT NULL,
    closed_at REAL,
    seq       INTEGER,
    result    TEXT
) WITHOUT ROWID;

CREATE TABLE rfid_accuracy (
    sku        TEXT PRIMARY KEY,
    counted_ts TEXT NOT NULL,
    count_id   TEXT NOT NULL,
    counted    INTEGER NOT NULL,
    expected   INTEGER NOT NULL,
    variance   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE rfid_basket_tags (
    basket_id TEXT NOT NULL,
    line_no   INTEGER NOT NULL,
    epc       TEXT NOT NULL,
    PRIMARY KEY (basket_id, line_no)
) WITHOUT ROWID;
CREATE UNIQUE INDEX rfid_basket_tags_epc ON rfid_basket_tags (basket_id, epc);

CREATE TABLE rfid_exit_alerts (
    epc        TEXT PRIMARY KEY,
    alerted_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX rfid_exit_alerts_at ON rfid_exit_alerts (alerted_at);
"""
