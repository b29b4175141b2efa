#!/usr/bin/env python3
"""Drafts extension/sql/venue_images--OLD--NEW.sql from two full install scripts.

usage: scripts/dev/gen-upgrade.py OLD.sql NEW.sql > extension/sql/venue_images--OLD--NEW.sql

pgrx writes the install script as blocks (/* <begin connected objects> */ ...). Blocks of
the new script that the old one lacks are emitted in order; a changed CREATE FUNCTION
becomes CREATE OR REPLACE. Source-location comments are ignored when comparing.
The output is a draft: read it, and add DROP/ALTER statements for anything removed or
changed in ways CREATE OR REPLACE cannot express.
"""
import re, sys

def blocks(path):
    text = open(path).read()
    out = []
    for b in re.findall(r'/\* <begin connected objects> \*/\n(.*?)/\* </end connected objects> \*/', text, re.S):
        key = '\n'.join(l for l in b.splitlines() if not re.match(r'^-- \S+\.rs:\d+$', l)).strip()
        if key:
            out.append((key, b))
    return out

old = {k for k, _ in blocks(sys.argv[1])}
old_functions = set(re.findall(r'CREATE\s+FUNCTION\s+"?([\w]+)"?\(', open(sys.argv[1]).read()))
print('-- Upgrade script drafted by scripts/dev/gen-upgrade.py and reviewed by hand.')
print("\\echo Use \"ALTER EXTENSION venue_images UPDATE\" to load this file. \\quit\n")
for key, body in blocks(sys.argv[2]):
    if key in old:
        continue
    m = re.search(r'CREATE\s+FUNCTION\s+"?([\w]+)"?\(', body)
    if m and m.group(1) in old_functions:
        body = re.sub(r'CREATE\s+FUNCTION', 'CREATE OR REPLACE FUNCTION', body, count=1)
    print(body.rstrip() + '\n')
