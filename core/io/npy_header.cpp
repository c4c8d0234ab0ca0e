#include "core/io/npy_header.hpp"

#include <cstdint>
#include <limits>
#include <vector>

#include "core/error.hpp"

namespace xgrad {

namespace {

constexpr int kMaxNesting = 16;

struct Literal {
  enum class Kind { String, Integer, Boolean, Tuple, List };
  Kind kind = Kind::Integer;
  std::string text;            // String
  std::int64_t integer = 0;    // Integer
  bool boolean = false;        // Boolean
  std::vector<Literal> items;  // Tuple, List
};

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// Python's repr of the literal: the canonical form descr matching relies on.
std::string repr(const Literal& v) {
  switch (v.kind) {
    case Literal::Kind::String: return quote(v.text);
    case Literal::Kind::Integer: return std::to_string(v.integer);
    case Literal::Kind::Boolean: return v.boolean ? "True" : "False";
    case Literal::Kind::Tuple:
    case Literal::Kind::List: {
      const bool tuple = v.kind == Literal::Kind::Tuple;
      std::string out = tuple ? "(" : "[";
      for (std::size_t i = 0; i < v.items.size(); ++i) out += (i ? ", " : "") + repr(v.items[i]);
      if (tuple && v.items.size() == 1) out += ",";
      return out + (tuple ? ")" : "]");
    }
  }
  return {};
}

class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& what) : text_(text), what_(what) {}

  NpyHeader parse() {
    NpyHeader header;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    skip_space();
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::size_t key_at = pos_;
      const Literal key = value(0);
      if (key.kind != Literal::Kind::String) fail_at(key_at, "a key is not a string");
      skip_space();
      expect(':');
      skip_space();
      const std::size_t value_at = pos_;
      const Literal v = value(0);
      if (key.text == "descr") {
        mark_seen(seen_descr, key.text);
        if (v.kind != Literal::Kind::String && v.kind != Literal::Kind::List)
          fail_at(value_at, "'descr' must be a string or a list");
        header.descr = repr(v);
      } else if (key.text == "fortran_order") {
        mark_seen(seen_order, key.text);
        if (v.kind != Literal::Kind::Boolean) fail_at(value_at, "'fortran_order' must be True or False");
        header.fortran_order = v.boolean;
      } else if (key.text == "shape") {
        mark_seen(seen_shape, key.text);
        header.shape = shape_of(v, value_at);
      } else {
        fail("unexpected key " + quote(key.text));
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') fail_at(pos_, "expected ',' or '}'");
    }
    ++pos_;
    skip_space();
    if (pos_ != text_.size()) fail_at(pos_, "unexpected text after the dictionary");
    if (!seen_descr) fail("missing key 'descr'");
    if (!seen_order) fail("missing key 'fortran_order'");
    if (!seen_shape) fail("missing key 'shape'");
    return header;
  }

 private:
  std::string_view text_;
  const std::string& what_;
  std::size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& problem) const {
    throw IOError("bad header in " + what_ + ": " + problem);
  }
  [[noreturn]] void fail_at(std::size_t at, const std::string& problem) const {
    fail(problem + " at header offset " + std::to_string(at));
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= text_.size(); }

  void skip_space() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  void expect(char c) {
    if (at_end() || peek() != c) fail_at(pos_, std::string("expected '") + c + "'");
    ++pos_;
  }

  void mark_seen(bool& seen, const std::string& key) {
    if (seen) fail("duplicate key " + quote(key));
    seen = true;
  }

  Shape shape_of(const Literal& v, std::size_t at) const {
    if (v.kind != Literal::Kind::Tuple) fail_at(at, "'shape' must be a tuple of integers");
    Shape shape;
    for (const Literal& d : v.items) {
      if (d.kind != Literal::Kind::Integer || d.integer < 0)
        fail_at(at, "'shape' must be a tuple of non-negative integers, got " + repr(v));
      shape.push_back(d.integer);
    }
    return shape;
  }

  Literal value(int depth) {
    if (depth > kMaxNesting) fail_at(pos_, "nesting deeper than " + std::to_string(kMaxNesting));
    const char c = peek();
    if (c == '\'' || c == '"') return string_literal();
    if (c == '-' || (c >= '0' && c <= '9')) return integer_literal();
    if (c == '(' || c == '[') return sequence(depth);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) return boolean_literal();
    if (at_end()) fail_at(pos_, "unexpected end of header");
    fail_at(pos_, std::string("unexpected character '") + printable(c) + "'");
  }

  static std::string printable(char c) {
    if (c >= 0x20 && c < 0x7f) return std::string(1, c);
    static const char* hex = "0123456789abcdef";
    const auto u = static_cast<unsigned char>(c);
    return std::string("\\x") + hex[u >> 4] + hex[u & 15];
  }

  Literal string_literal() {
    const char quote_char = text_[pos_++];
    Literal v;
    v.kind = Literal::Kind::String;
    while (true) {
      if (at_end()) fail_at(pos_, "unterminated string");
      const char c = text_[pos_++];
      if (c == quote_char) break;
      if (c == '\n') fail_at(pos_ - 1, "unterminated string");
      if (c == '\\') {
        if (at_end()) fail_at(pos_, "unterminated string");
        const char e = text_[pos_++];
        if (e != '\\' && e != '\'' && e != '"') fail_at(pos_ - 2, "unsupported escape in a string");
        v.text += e;
      } else {
        v.text += c;
      }
    }
    return v;
  }

  Literal integer_literal() {
    const std::size_t start = pos_;
    const bool negative = peek() == '-';
    if (negative) ++pos_;
    if (!(peek() >= '0' && peek() <= '9')) fail_at(start, "malformed integer");
    // Accumulate negatively so that the int64 minimum still parses.
    std::int64_t value = 0;
    while (peek() >= '0' && peek() <= '9') {
      const int digit = peek() - '0';
      if (value < (std::numeric_limits<std::int64_t>::min() + digit) / 10)
        fail_at(start, "integer out of range");
      value = value * 10 - digit;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 long suffix, found in old files
    if (!negative && value == std::numeric_limits<std::int64_t>::min())
      fail_at(start, "integer out of range");
    Literal v;
    v.kind = Literal::Kind::Integer;
    v.integer = negative ? value : -value;
    return v;
  }

  Literal boolean_literal() {
    const std::size_t start = pos_;
    while ((peek() >= 'A' && peek() <= 'Z') || (peek() >= 'a' && peek() <= 'z') || peek() == '_') ++pos_;
    const std::string_view word = text_.substr(start, pos_ - start);
    if (word != "True" && word != "False") fail_at(start, "unexpected name '" + std::string(word) + "'");
    Literal v;
    v.kind = Literal::Kind::Boolean;
    v.boolean = word == "True";
    return v;
  }

  // "(x)" is x itself in Python; "()", "(x,)" and "(x, y)" are tuples.
  Literal sequence(int depth) {
    const char open = text_[pos_++];
    const char close = open == '(' ? ')' : ']';
    Literal v;
    v.kind = open == '(' ? Literal::Kind::Tuple : Literal::Kind::List;
    bool trailing_comma = false;
    while (true) {
      skip_space();
      if (peek() == close) break;
      v.items.push_back(value(depth + 1));
      skip_space();
      trailing_comma = peek() == ',';
      if (trailing_comma) {
        ++pos_;
        continue;
      }
      if (peek() != close) fail_at(pos_, std::string("expected ',' or '") + close + "'");
    }
    ++pos_;
    if (open == '(' && v.items.size() == 1 && !trailing_comma) return std::move(v.items[0]);
    return v;
  }
};

}  // namespace

NpyHeader parse_npy_header(std::string_view text, const std::string& what) {
  return HeaderParser(text, what).parse();
}

std::string format_npy_header(const NpyHeader& header) {
  std::string shape = "(";
  for (std::size_t i = 0; i < header.shape.size(); ++i)
    shape += (i ? ", " : "") + std::to_string(header.shape[i]);
  if (header.shape.size() == 1) shape += ",";
  shape += ")";
  return "{'descr': " + header.descr + ", 'fortran_order': " + (header.fortran_order ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

}  // namespace xgrad
