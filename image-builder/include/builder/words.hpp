// Word splitting and variable substitution for the instructions Docker substitutes (FROM, COPY, ADD, ENV, ARG,
// LABEL, EXPOSE, USER, WORKDIR, STOPSIGNAL): $VAR, ${VAR}, ${VAR:-default}, ${VAR:+alt}, single quotes (literal),
// double quotes (expanding), backslash escapes. Unset variables expand to "". Pure functions.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::builder {

using Vars = std::map<std::string, std::string>;

// Splits `s` into words on unquoted whitespace, removing quotes and expanding variables from `vars` (when
// non-null). kInvalidArgument for an unterminated quote or ${...}.
Result<std::vector<std::string>> SplitWords(std::string_view s, const Vars* vars);

// Expands variables in `s` and removes quotes, keeping whitespace as it is (one word).
Result<std::string> Expand(std::string_view s, const Vars& vars);

}  // namespace tug::builder
