#pragma once
// The one place that includes <sqlite3.h>. Debian's (and most distributions') SQLite is built
// with SQLITE_ENABLE_PREUPDATE_HOOK, but the declarations are only visible when the macro is
// defined before the header, so define it here for the change journal.

#ifndef SQLITE_ENABLE_PREUPDATE_HOOK
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#endif
#include <sqlite3.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
