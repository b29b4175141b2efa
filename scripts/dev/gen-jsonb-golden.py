#!/usr/bin/env python3
"""Regenerates the golden jsonb corpus from a real PostgreSQL.

Each line: JSON input text, TAB, hex of the on-disk jsonb datum (as PostgreSQL stored it,
read back with pageinspect from a STORAGE PLAIN column), TAB, jsonb_out text.
Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/dev/gen-jsonb-golden.py [--out PATH]
(needs superuser for pageinspect). Without --out it writes the server major's fixture:
extension/core/tests/fixtures/jsonb_golden.tsv from PostgreSQL 15 (the file the core's tests
read), jsonb_golden.pg<N>.tsv from another major N. The test command regenerates the corpus
from each major it tests into a temporary file and checks it equals the committed fixtures,
and that every major's fixture equals 15's.
"""
import argparse, json, os, subprocess, sys

cases = [
  '[]', '{}', '0', '-0', '1', '-1', '10000', '123456789', '1.50', '0.0001', '1e10', '1.5e-7',
  '-12.34', '99999999999999999999.9999', '1E+2', '0.000000000000000000000000000000000000000000000000000000000000000000001',
  '12345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890',
  '"abc"', '""', '"a\\"b\\\\c\\n\\t\\u0001\\u001f/"', '"\\u00e9t\\u00e9 \\ud83d\\ude00 日本"', 'true', 'false', 'null',
  '[1, "a", true, null, 2.5, [], {}]', '[[1, [2, [3]]], {"a": {"b": {"c": 1}}}]',
  '{"b": 1, "a": 2, "aa": 3, "c": [1, 2]}', '{"a": 1, "a": 2}', '{"key": "x", "k": 1.0, "kk": -3}',
  '[' + ', '.join(str(i) for i in range(70)) + ']',
  '[' + ', '.join('"s%d"' % i for i in range(40)) + ']',
  '{' + ', '.join('"k%d": %d' % (i, i * 7) for i in range(40)) + '}',
  '[{"url": "https://ik.imagekit.io/x/gp-1.jpg", "width": 4032, "height": 3024, "provider": "google_places", "retry_count": 2, "fetched_at": "2025-10-24T14:29:03Z", "quality_score": 0.66288, "upload_status": "failed", "error_details": {"error": "boom", "error_type": "rate_limited", "status_code": 429, "timestamp": "2025-10-24T14:29:03Z", "retry_attempt": 2}, "provider_url": "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AbC&key=SECRET"}]',
  '[1, {"a": 1.5}, "x", 2.25, [true, 3]]', '["a", 1, "bb", 22, "ccc", 333]',
  '{"n": 3.14159265358979323846264338327950288419716939937510}', '[-0.5, 0.5e3, 5e-1, 100, 1000000]',
]

def sql(q):
    r = subprocess.run(['psql', os.environ['DATABASE_URL'], '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', q],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    return r.stdout

def lit(s):
    return "'" + s.replace("'", "''") + "'"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--out', help='output file (default: the server major\'s fixture)')
args = parser.parse_args()
if not os.environ.get('DATABASE_URL'):
    parser.error('set DATABASE_URL to a superuser connection (pageinspect), e.g. '
                 'DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres')  # exits 2

sql("CREATE EXTENSION IF NOT EXISTS pageinspect; DROP TABLE IF EXISTS jsonb_golden; "
    "CREATE TABLE jsonb_golden(j jsonb); ALTER TABLE jsonb_golden ALTER COLUMN j SET STORAGE PLAIN;")
out = []
for c in cases:
    sql("TRUNCATE jsonb_golden; INSERT INTO jsonb_golden VALUES (%s::jsonb);" % lit(c))
    hexbytes = sql("SELECT encode(t_data, 'hex') FROM heap_page_items(get_raw_page('jsonb_golden', 0)) WHERE t_data IS NOT NULL").strip()
    text = sql("SELECT j::text FROM jsonb_golden").rstrip('\n')
    out.append('%s\t%s\t%s' % (c, hexbytes, text))
sql("DROP TABLE jsonb_golden;")
major = int(sql("SHOW server_version_num").strip()) // 10000
path = args.out or os.path.join(
    os.path.dirname(__file__), '../../extension/core/tests/fixtures',
    'jsonb_golden.tsv' if major == 15 else 'jsonb_golden.pg%d.tsv' % major)
open(path, 'w').write('\n'.join(out) + '\n')
print('wrote %d cases from PostgreSQL %d to %s' % (len(out), major, os.path.normpath(path)))
