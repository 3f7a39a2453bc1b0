PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES('schema','1');
CREATE TABLE segments(
  id INTEGER PRIMARY KEY,
  sensor TEXT NOT NULL,
  path TEXT NOT NULL UNIQUE,     -- relative to storage.dir: 'sensors/<id>/segments/<file>.pcap'
  iface TEXT NOT NULL,           -- interface name as the sensor reported it
  linktype INTEGER NOT NULL,
  snaplen INTEGER NOT NULL,
  min_ns INTEGER NOT NULL,       -- smallest packet timestamp in the file (ns since epoch)
  max_ns INTEGER NOT NULL,       -- largest packet timestamp
  packets INTEGER NOT NULL,
  bytes INTEGER NOT NULL,        -- file size in bytes
  closed_ns INTEGER NOT NULL     -- wall clock when the segment was closed
);
INSERT INTO segments VALUES(2,'s1','sensors/s1/segments/01700000001000000000-00000000000000aa-2.0-eth0.pcap','eth0',1,65535,1700000001000000000,1700000001500000000,11,1300,1700000001500001000);
INSERT INTO segments VALUES(3,'s1','sensors/s1/segments/01700000002000000000-00000000000000aa-3.0-eth0.pcap','eth0',1,65535,1700000002000000000,1700000002500000000,12,1416,1700000002500001000);
CREATE TABLE retention(sensor TEXT PRIMARY KEY, segments INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL);
INSERT INTO retention VALUES('s1',1,10,1184);
CREATE TABLE conns(
  conn_id INTEGER PRIMARY KEY,  -- numbered in order of dissection, from l4_seq
  flow_id INTEGER NOT NULL,     -- 63-bit hash of sensor, iface and the address pair
  sensor TEXT NOT NULL, iface TEXT NOT NULL,
  proto TEXT NOT NULL,          -- 'tcp' or 'udp'
  client TEXT NOT NULL, client_port INTEGER NOT NULL,
  server TEXT NOT NULL, server_port INTEGER NOT NULL,
  state TEXT NOT NULL,          -- SYN_SENT ESTABLISHED CLOSING CLOSED RESET
  ended TEXT,                   -- NULL while tracked, else why it ended
  first_ns INTEGER NOT NULL, last_ns INTEGER NOT NULL,
  c_pkts INTEGER NOT NULL, c_bytes INTEGER NOT NULL, s_pkts INTEGER NOT NULL, s_bytes INTEGER NOT NULL,
  c_payload INTEGER NOT NULL, s_payload INTEGER NOT NULL,  -- stream bytes reassembled
  rtt_ns INTEGER NOT NULL,      -- handshake RTT, 0 when not seen
  retrans INTEGER NOT NULL, out_of_order INTEGER NOT NULL, zero_windows INTEGER NOT NULL,
  resets INTEGER NOT NULL, gap_bytes INTEGER NOT NULL, bad_overlaps INTEGER NOT NULL,
  midstream INTEGER NOT NULL
);
CREATE TABLE conn_segs(conn_id INTEGER NOT NULL, seg_id INTEGER NOT NULL,
  packets INTEGER NOT NULL, PRIMARY KEY(conn_id, seg_id)) WITHOUT ROWID;
CREATE TABLE l4_done(seg_id INTEGER PRIMARY KEY, done_ns INTEGER NOT NULL,
  packets INTEGER NOT NULL, in_conns INTEGER NOT NULL);
CREATE TABLE l4_stats(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO l4_stats VALUES('retired_before_dissection',1);
CREATE TABLE l4_failed(seg_id INTEGER PRIMARY KEY, attempts INTEGER NOT NULL,
  last_ns INTEGER NOT NULL, error TEXT NOT NULL,
  permanent INTEGER NOT NULL);
CREATE TABLE l4_seq(id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL);
INSERT INTO l4_seq VALUES(0,1);
CREATE INDEX segments_sensor_time ON segments(sensor, min_ns);
CREATE INDEX segments_time ON segments(min_ns);
CREATE INDEX segments_end ON segments(max_ns);
CREATE INDEX conns_flow ON conns(flow_id);
CREATE INDEX conns_time ON conns(sensor, first_ns);
CREATE INDEX conn_segs_seg ON conn_segs(seg_id);
CREATE TRIGGER segments_l4_delete AFTER DELETE ON segments BEGIN
  INSERT INTO l4_stats(key, value) SELECT 'retired_before_dissection', 1
    WHERE NOT EXISTS (SELECT 1 FROM l4_done WHERE seg_id = old.id)
    ON CONFLICT(key) DO UPDATE SET value = value + 1;
  DELETE FROM conns WHERE conn_id IN (SELECT conn_id FROM conn_segs WHERE seg_id = old.id)
    AND NOT EXISTS (SELECT 1 FROM conn_segs c WHERE c.conn_id = conns.conn_id AND c.seg_id <> old.id);
  DELETE FROM conn_segs WHERE seg_id = old.id;
  DELETE FROM l4_done WHERE seg_id = old.id;
END;
CREATE TRIGGER segments_l4_failed_delete AFTER DELETE ON segments BEGIN
  DELETE FROM l4_failed WHERE seg_id = old.id;
END;
CREATE VIEW flows AS SELECT flow_id, sensor, iface,
  min(min(client, server)) AS peer_a, max(max(client, server)) AS peer_b, count(*) AS conns,
  min(first_ns) AS first_ns, max(last_ns) AS last_ns, sum(c_pkts + s_pkts) AS packets,
  sum(c_bytes + s_bytes) AS bytes FROM conns GROUP BY flow_id;
COMMIT;
