#pragma once
// ormcache: a typed Repository<T> over SQLite whose reads are cached, with invalidation that
// follows transactions. This umbrella header brings the ORM, the CacheManager and the memory
// and null backends.

#include "backend.hpp"
#include "backends/memory.hpp"
#include "cache_config.hpp"
#include "cache_manager.hpp"
#include "cache_stats.hpp"
#include "change_set.hpp"
#include "codec.hpp"
#include "database.hpp"
#include "database_config.hpp"
#include "errors.hpp"
#include "filters.hpp"
#include "model.hpp"
#include "model_json.hpp"
#include "options.hpp"
#include "repository.hpp"
#include "serializer.hpp"
#include "session.hpp"
#include "transaction.hpp"
