# Ports store code written against the SQLite API to the store's backend-neutral driver
# (control-plane/store/store_db.h): `sed -E -i -f scripts/store-port.sed FILE.c`.
# The driver keeps SQLite's shapes (bind/step/column/reset), so the port is textual.
s/sqlite3_bind_text\(([^,]+), ([^,]+), (.+), -1, SQLITE_(STATIC|TRANSIENT)\)/sql_bind_text(\1, \2, \3)/g
s/sqlite3_bind_(int64|int|double|null)\(/sql_bind_\1(/g
s/sqlite3_column_(int64|int|double|text)\(/sql_column_\1(/g
s/\(const char \*\)sql_column_text\(/sql_column_text(/g
s/sqlite3_step\(/sql_step(/g
s/sqlite3_reset\(/sql_reset(/g
s/sqlite3_changes\(st->db\)/sql_changes(st)/g
s/sqlite3_last_insert_rowid\(st->db\)/sql_last_insert_id(st)/g
s/SQLITE_ROW/SQL_ROW/g
s/SQLITE_DONE/SQL_DONE/g
s/sqlite3_stmt/store_stmt/g
s/enum store_stmt([^_])/enum store_stmt_id\1/g
s/sqlite3_prepare_v2\(st->db, ([^,]+), -1, &([a-z]+), NULL\) != SQLITE_OK/store__prepare(st, \1, \&\2, NULL) != HF_OK/g
s/sqlite3_finalize\(/store__finalize(st, /g
s/sqlite3_errmsg\(st->db\)/store__errmsg(st)/g
s/sqlite3_exec\(st->db, "BEGIN", NULL, NULL, NULL\) == SQLITE_OK \? HF_OK : HF_EDB/store__read_begin(st)/g
s/sqlite3_exec\(st->db, "COMMIT", NULL, NULL, NULL\)/store__read_end(st)/g
s/sqlite3_prepare_v2\(st->db, ([^,]+), -1, &([a-z]+), NULL\) == SQLITE_OK/store__prepare(st, \1, \&\2, NULL) == HF_OK/g
