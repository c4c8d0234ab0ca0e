#include "core/io/torch_unpickler.hpp"

#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/error.hpp"
#include "core/io/tensor_bytes.hpp"
#include "core/io/zip.hpp"

namespace xgrad::torch_detail {

namespace {

// The callables and classes the unpickler knows (see the header). None is ever called.
enum class Global { OrderedDict, RebuildTensorV2, RebuildParameter, RebuildParameterWithState, StorageType };

struct StorageType {
  std::optional<DType> dtype;  // empty: a torch storage class of a dtype xgrad does not have
  std::string name;            // "torch.FloatStorage"
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;

// The entries of a dict, in insertion order, with an index for SETITEM.
struct DictData {
  std::vector<std::pair<std::string, ValuePtr>> entries;
  std::unordered_map<std::string, std::size_t> index;
};

// One unpickled value, kept small: a pickle of N bytes can make up to N of them.
struct Value {
  enum class Kind : std::uint8_t { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor };
  Kind kind = Kind::None;
  Global global = Global::OrderedDict;
  bool boolean = false;
  bool frozen = false;   // inside another container: no longer mutable (rules out cycles)
  int depth = 1;         // nesting depth of containers below and including this
  std::int64_t integer = 0;  // Int; a Storage's element count
  double real = 0;
  std::string text;          // String; a Global's dotted name; a Storage's key
  std::vector<ValuePtr> items;                       // Tuple, List
  std::unique_ptr<DictData> dict;                    // Dict (created at the first SETITEM)
  std::shared_ptr<const StorageType> storage_type;   // Global StorageType, Storage, Tensor
  Tensor tensor;  // Tensor (undefined: a dtype xgrad does not have)
};

ValuePtr make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "a bool";
    case Value::Kind::Int: return "an int";
    case Value::Kind::Float: return "a float";
    case Value::Kind::String: return "a string";
    case Value::Kind::Tuple: return "a tuple";
    case Value::Kind::List: return "a list";
    case Value::Kind::Dict: return "a dict";
    case Value::Kind::Global: return "a global";
    case Value::Kind::Storage: return "a storage";
    case Value::Kind::Tensor: return "a tensor";
  }
  return "a value";
}

std::optional<StorageType> storage_type_of(const std::string& module, const std::string& name) {
  if (module != "torch" || !name.ends_with("Storage")) return std::nullopt;
  struct Known {
    const char* name;
    std::optional<DType> dtype;
  };
  static const Known kKnown[] = {
      {"BoolStorage", DType::Bool},       {"IntStorage", DType::Int32},      {"LongStorage", DType::Int64},
      {"HalfStorage", DType::Float16},    {"BFloat16Storage", DType::BFloat16}, {"FloatStorage", DType::Float32},
      {"DoubleStorage", DType::Float64},  {"ByteStorage", std::nullopt},     {"CharStorage", std::nullopt},
      {"ShortStorage", std::nullopt},     {"ComplexFloatStorage", std::nullopt}, {"ComplexDoubleStorage", std::nullopt},
      {"ComplexHalfStorage", std::nullopt}, {"QInt8Storage", std::nullopt},  {"QUInt8Storage", std::nullopt},
      {"QInt32Storage", std::nullopt},    {"QUInt4x2Storage", std::nullopt}, {"QUInt2x4Storage", std::nullopt},
      {"UntypedStorage", std::nullopt}};
  for (const Known& k : kKnown)
    if (name == k.name) return StorageType{k.dtype, "torch." + name};
  return std::nullopt;
}

class Unpickler {
 public:
  Unpickler(std::string_view data, const StorageBytes& storage_bytes, std::uint64_t budget, const std::string& what)
      : p_(data), storage_bytes_(storage_bytes), budget_(budget), what_(what) {}

  ValuePtr run() {
    while (true) {
      if (pos_ >= p_.size()) fail("the pickle ends without STOP");
      const std::size_t at = pos_;
      const auto op = static_cast<unsigned char>(p_[pos_++]);
      switch (op) {
        case 0x80: {  // PROTO
          const int protocol = byte();
          if (protocol < 2 || protocol > 5) fail("pickle protocol " + std::to_string(protocol) + " (expected 2 to 5)");
          break;
        }
        case 0x95: read(8); break;  // FRAME: a length hint only
        case '.': {                 // STOP
          if (stack_.size() != 1 || !marks_.empty()) fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
          return stack_.back();
        }
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case ')': push(make(Value::Kind::Tuple)); break;   // EMPTY_TUPLE
        case 't': push(tuple(pop_mark())); break;           // TUPLE
        case 0x85: push(tuple(pop_n(1))); break;            // TUPLE1
        case 0x86: push(tuple(pop_n(2))); break;            // TUPLE2
        case 0x87: push(tuple(pop_n(3))); break;            // TUPLE3
        case ']': push(make(Value::Kind::List)); break;     // EMPTY_LIST
        case 'a': {                                         // APPEND
          ValuePtr v = pop();
          append(top(), {v});
          break;
        }
        case 'e': {  // APPENDS
          std::vector<ValuePtr> vs = pop_mark();
          append(top(), vs);
          break;
        }
        case '}': push(make(Value::Kind::Dict)); break;  // EMPTY_DICT
        case 's': {                                      // SETITEM
          std::vector<ValuePtr> kv = pop_n(2);
          set_items(top(), kv);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<ValuePtr> kv = pop_mark();
          set_items(top(), kv);
          break;
        }
        case 'N': push(make(Value::Kind::None)); break;
        case 0x88: push(boolean(true)); break;   // NEWTRUE
        case 0x89: push(boolean(false)); break;  // NEWFALSE
        case 'K': push(integer(byte())); break;  // BININT1
        case 'M': push(integer(static_cast<std::int64_t>(little(2)))); break;  // BININT2
        case 'J': push(integer(static_cast<std::int32_t>(static_cast<std::uint32_t>(little(4))))); break;  // BININT
        case 0x8a: {  // LONG1: n bytes of little-endian two's complement
          const int n = byte();
          if (n > 8) fail("an integer of " + std::to_string(n) + " bytes (more than int64)");
          std::uint64_t v = little(n);
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~std::uint64_t{0} << (8 * n);  // sign-extend
          push(integer(static_cast<std::int64_t>(v)));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const std::string_view b = read(8);
          std::uint64_t bits = 0;
          for (char c : b) bits = (bits << 8) | static_cast<unsigned char>(c);
          auto v = make(Value::Kind::Float);
          std::memcpy(&v->real, &bits, 8);
          push(v);
          break;
        }
        case 'X': push(string(read(little(4)))); break;     // BINUNICODE
        case 0x8c: push(string(read(byte()))); break;       // SHORT_BINUNICODE
        case 0x8d: push(string(read(little(8)))); break;    // BINUNICODE8
        case 'q': memo_[byte()] = top(); break;             // BINPUT
        case 'r': memo_[little(4)] = top(); break;          // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;      // MEMOIZE
        case 'h': push(memo_get(byte())); break;            // BINGET
        case 'j': push(memo_get(little(4))); break;         // LONG_BINGET
        case 'c': {                                         // GLOBAL "module\nname\n"
          const std::string module = line(), name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          std::vector<ValuePtr> mn = pop_n(2);
          if (mn[0]->kind != Value::Kind::String || mn[1]->kind != Value::Kind::String)
            fail("STACK_GLOBAL of non-strings");
          push(global(mn[0]->text, mn[1]->text));
          break;
        }
        case 'R': {  // REDUCE
          ValuePtr args = pop();
          ValuePtr callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 'b': {  // BUILD: only the attributes of an OrderedDict (a state dict's _metadata), ignored
          ValuePtr state = pop();
          if (top()->kind != Value::Kind::Dict)
            fail("BUILD on " + std::string(kind_name(top()->kind)) + " (only a state dict's metadata is accepted)");
          break;
        }
        case 'Q': {  // BINPERSID
          ValuePtr pid = pop();
          push(storage(pid));
          break;
        }
        default: {
          static const char* digits = "0123456789abcdef";
          std::string hex = "0x";
          hex += digits[op >> 4];
          hex += digits[op & 15];
          fail("unsupported pickle opcode " + hex + " at byte " + std::to_string(at) +
               " (xgrad reads the opcodes of a tensor state dict only)");
        }
      }
    }
  }

 private:
  std::string_view p_;
  std::size_t pos_ = 0;
  const StorageBytes& storage_bytes_;
  std::uint64_t budget_;
  const std::string& what_;
  std::vector<ValuePtr> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, ValuePtr> memo_;

  [[noreturn]] void fail(const std::string& problem) const {
    throw IOError("bad pickle in " + what_ + ": " + problem);
  }

  std::string_view read(std::uint64_t n) {
    if (n > p_.size() - pos_)
      fail("truncated: " + std::to_string(n) + " bytes needed at byte " + std::to_string(pos_) + ", " +
           std::to_string(p_.size() - pos_) + " left");
    const std::string_view out = p_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  int byte() { return static_cast<unsigned char>(read(1)[0]); }
  std::uint64_t little(int n) {
    const std::string_view b = read(n);
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(b[i])) << (8 * i);
    return v;
  }
  std::string line() {
    const std::size_t end = p_.find('\n', pos_);
    if (end == std::string_view::npos) fail("truncated GLOBAL");
    std::string out(p_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }

  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr& top() {
    if (stack_.empty() || (!marks_.empty() && marks_.back() == stack_.size())) fail("stack underflow");
    return stack_.back();
  }
  ValuePtr pop() {
    ValuePtr v = top();
    stack_.pop_back();
    return v;
  }
  std::vector<ValuePtr> pop_n(std::size_t n) {
    const std::size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) fail("stack underflow");
    std::vector<ValuePtr> out(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return out;
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> out(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return out;
  }
  ValuePtr memo_get(std::uint64_t index) {
    const auto found = memo_.find(index);
    if (found == memo_.end()) fail("memo entry " + std::to_string(index) + " is not set");
    return found->second;
  }

  static ValuePtr boolean(bool b) {
    auto v = make(Value::Kind::Bool);
    v->boolean = b;
    return v;
  }
  static ValuePtr integer(std::int64_t i) {
    auto v = make(Value::Kind::Int);
    v->integer = i;
    return v;
  }
  static ValuePtr string(std::string_view s) {
    auto v = make(Value::Kind::String);
    v->text = s;
    return v;
  }

  // A value placed into a container: it may not be mutated afterwards, and the depth grows.
  void adopt(Value& container, Value& child) {
    if (&container == &child) fail("a container cannot hold itself");
    child.frozen = true;
    container.depth = std::max(container.depth, child.depth + 1);
    if (container.depth > kMaxPickleDepth) fail("containers nest deeper than " + std::to_string(kMaxPickleDepth) + " levels");
  }

  ValuePtr tuple(std::vector<ValuePtr> items) {
    auto t = make(Value::Kind::Tuple);
    for (const ValuePtr& v : items) adopt(*t, *v);
    t->items = std::move(items);
    return t;
  }

  void mutable_container(const Value& c, Value::Kind kind, const char* op) {
    if (c.kind != kind) fail(std::string(op) + " on " + kind_name(c.kind));
    if (c.frozen) fail(std::string(op) + " on a container already inside another one");
  }

  void append(ValuePtr& list, const std::vector<ValuePtr>& values) {
    mutable_container(*list, Value::Kind::List, "APPEND");
    for (const ValuePtr& v : values) {
      adopt(*list, *v);
      list->items.push_back(v);
    }
  }

  void set_items(ValuePtr& dict, const std::vector<ValuePtr>& kv) {
    mutable_container(*dict, Value::Kind::Dict, "SETITEM");
    if (kv.size() % 2 != 0) fail("SETITEMS with an odd number of values");
    for (std::size_t i = 0; i < kv.size(); i += 2) {
      std::string key;
      if (kv[i]->kind == Value::Kind::String)
        key = kv[i]->text;
      else if (kv[i]->kind == Value::Kind::Int)
        key = std::to_string(kv[i]->integer);
      else
        fail(std::string("a dict key that is ") + kind_name(kv[i]->kind) + " (expected a string)");
      adopt(*dict, *kv[i + 1]);
      if (!dict->dict) dict->dict = std::make_unique<DictData>();
      DictData& d = *dict->dict;
      const auto [found, inserted] = d.index.emplace(key, d.entries.size());
      if (inserted)
        d.entries.emplace_back(std::move(key), kv[i + 1]);
      else
        d.entries[found->second].second = kv[i + 1];
    }
  }

  ValuePtr global(const std::string& module, const std::string& name) {
    auto g = make(Value::Kind::Global);
    g->text = module + "." + name;
    if (module == "collections" && name == "OrderedDict") {
      g->global = Global::OrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      g->global = Global::RebuildTensorV2;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      g->global = Global::RebuildParameter;
    } else if (module == "torch._utils" && name == "_rebuild_parameter_with_state") {
      g->global = Global::RebuildParameterWithState;
    } else if (auto st = storage_type_of(module, name)) {
      g->global = Global::StorageType;
      g->storage_type = std::make_shared<const StorageType>(*st);
    } else {
      fail("global " + quoted_name(g->text) +
           " is not allowed (a state dict needs only collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
           "_rebuild_parameter and torch.*Storage; nothing from the file is ever called)");
    }
    return g;
  }

  static std::int64_t int_arg(const ValuePtr& v, const char* what, Unpickler& u) {
    if (v->kind != Value::Kind::Int) u.fail(std::string("_rebuild_tensor_v2: ") + what + " is " + kind_name(v->kind));
    return v->integer;
  }

  Shape int_tuple(const ValuePtr& v, const char* what) {
    if (v->kind != Value::Kind::Tuple) fail(std::string("_rebuild_tensor_v2: ") + what + " is " + kind_name(v->kind));
    Shape out;
    for (const ValuePtr& d : v->items) {
      const std::int64_t x = int_arg(d, what, *this);
      if (x < 0) fail(std::string("_rebuild_tensor_v2: negative ") + what);
      out.push_back(x);
    }
    return out;
  }

  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args) {
    if (callable->kind != Value::Kind::Global) fail(std::string("REDUCE of ") + kind_name(callable->kind) + ", not a callable");
    if (args->kind != Value::Kind::Tuple) fail("REDUCE with arguments that are not a tuple");
    const std::vector<ValuePtr>& a = args->items;
    switch (callable->global) {
      case Global::OrderedDict:
        if (!a.empty()) fail("collections.OrderedDict called with arguments");
        return make(Value::Kind::Dict);
      case Global::RebuildTensorV2:
        if (a.size() != 6 && a.size() != 7) fail("_rebuild_tensor_v2 with " + std::to_string(a.size()) + " arguments");
        return rebuild_tensor(a);
      case Global::RebuildParameter:
      case Global::RebuildParameterWithState:
        if (a.size() < 3 || a.size() > 4 || a[0]->kind != Value::Kind::Tensor)
          fail(callable->text + " with unexpected arguments");
        return a[0];
      case Global::StorageType: break;
    }
    fail("REDUCE of " + quoted_name(callable->text) + " is not allowed");
  }

  ValuePtr storage(const ValuePtr& pid) {
    const std::vector<ValuePtr>& t = pid->items;
    if (pid->kind != Value::Kind::Tuple || t.size() != 5 || t[0]->kind != Value::Kind::String || t[0]->text != "storage")
      fail("a persistent id that is not ('storage', type, key, location, numel)");
    if (t[1]->kind != Value::Kind::Global || t[1]->global != Global::StorageType)
      fail("a persistent id whose storage type is not a torch storage class");
    if (t[2]->kind != Value::Kind::String || t[3]->kind != Value::Kind::String || t[4]->kind != Value::Kind::Int ||
        t[4]->integer < 0)
      fail("a persistent id with a bad key, location or size");
    auto s = make(Value::Kind::Storage);
    s->storage_type = t[1]->storage_type;
    s->text = t[2]->text;
    s->integer = t[4]->integer;
    return s;
  }

  ValuePtr rebuild_tensor(const std::vector<ValuePtr>& a) {
    if (a[0]->kind != Value::Kind::Storage) fail("_rebuild_tensor_v2 of " + std::string(kind_name(a[0]->kind)));
    const Value& s = *a[0];
    const std::int64_t offset = int_arg(a[1], "storage offset", *this);
    if (offset < 0) fail("_rebuild_tensor_v2: negative storage offset");
    const Shape size = int_tuple(a[2], "size");
    const Shape stride = int_tuple(a[3], "stride");
    if (size.size() != stride.size()) fail("_rebuild_tensor_v2: size and stride of different lengths");
    if (size.size() > 64) fail("_rebuild_tensor_v2: more than 64 dimensions");
    auto out = make(Value::Kind::Tensor);
    out->storage_type = s.storage_type;
    if (!s.storage_type->dtype) return out;  // reported with its key when flattened
    const DType dtype = *s.storage_type->dtype;
    const std::string& key = s.text;
    const auto numel = static_cast<std::uint64_t>(s.integer);
    const std::uint64_t item = itemsize(dtype);
    const std::string_view bytes = storage_bytes_(key);
    std::uint64_t storage_bytes = 0;
    if (__builtin_mul_overflow(numel, item, &storage_bytes) || storage_bytes > bytes.size())
      fail("storage " + quoted_name(key) + " claims " + std::to_string(numel) + " elements of " +
           std::string(dtype_name(dtype)) + ", its record has " + std::to_string(bytes.size()) + " bytes");
    std::uint64_t out_bytes = 0;
    if (!io_detail::checked_nbytes(size, item, std::numeric_limits<std::int64_t>::max(), out_bytes))
      fail("_rebuild_tensor_v2: size " + shape_str(size) + " is too large");
    if (out_bytes > budget_)
      fail("the tensors expand their storages to more than " + std::to_string(budget_) +
           " bytes (a view of size " + shape_str(size) + " and stride " + shape_str(stride) + ")");
    budget_ -= out_bytes;
    Tensor t = empty(size, dtype);
    if (out_bytes > 0) {
      // The last element read: offset + sum((size_i - 1) * stride_i), all within the storage.
      std::uint64_t last = static_cast<std::uint64_t>(offset);
      for (std::size_t i = 0; i < size.size(); ++i) {
        std::uint64_t span = 0;
        if (__builtin_mul_overflow(static_cast<std::uint64_t>(size[i] - 1), static_cast<std::uint64_t>(stride[i]), &span) ||
            __builtin_add_overflow(last, span, &last))
          fail("_rebuild_tensor_v2: the view overflows");
      }
      if (last >= numel)
        fail("_rebuild_tensor_v2: a view of size " + shape_str(size) + ", stride " + shape_str(stride) + " at offset " +
             std::to_string(offset) + " reaches element " + std::to_string(last) + " of storage " +
             quoted_name(key) + ", which has " + std::to_string(numel));
      gather(bytes.data(), static_cast<std::uint64_t>(offset), size, stride, item, io_detail::tensor_bytes(t));
      if (dtype == DType::Bool) {
        char* p = io_detail::tensor_bytes(t);
        for (std::uint64_t i = 0; i < out_bytes; ++i) p[i] = p[i] != 0;
      }
      if constexpr (!io_detail::kNativeLittle) io_detail::swap_element_bytes(io_detail::tensor_bytes(t), out_bytes, item);
    }
    out->tensor = t;
    return out;
  }

  // Copies the strided view into `out`, row-major, one innermost row at a time.
  static void gather(const char* base, std::uint64_t offset, const Shape& size, const Shape& stride, std::uint64_t item,
                     char* out) {
    const std::size_t n = size.size();
    if (n == 0) {
      std::memcpy(out, base + offset * item, item);
      return;
    }
    const std::int64_t inner = size[n - 1], inner_stride = stride[n - 1];
    std::int64_t rows = 1;
    for (std::size_t k = 0; k + 1 < n; ++k) rows *= size[k];
    std::vector<std::int64_t> index(n, 0);
    for (std::int64_t r = 0; r < rows; ++r) {
      std::uint64_t at = offset;
      for (std::size_t k = 0; k + 1 < n; ++k) at += static_cast<std::uint64_t>(index[k] * stride[k]);
      if (inner_stride == 1) {
        std::memcpy(out, base + at * item, static_cast<std::size_t>(inner) * item);
        out += inner * item;
      } else {
        for (std::int64_t j = 0; j < inner; ++j, out += item)
          std::memcpy(out, base + (at + static_cast<std::uint64_t>(j * inner_stride)) * item, item);
      }
      for (std::size_t k = n - 1; k-- > 0;) {
        if (++index[k] < size[k]) break;
        index[k] = 0;
      }
    }
  }
};

void flatten(const Value& v, const std::string& key, const std::string& what, std::map<std::string, Tensor>& out) {
  const auto child = [&](const std::string& k) { return key.empty() ? k : key + "." + k; };
  const auto put = [&](Tensor t) {
    if (!out.emplace(key, std::move(t)).second)
      throw IOError("duplicate key " + quoted_name(key) + " in " + what + " (after flattening nested dicts)");
  };
  const auto unsupported = [&](const std::string& problem) -> IOError {
    return IOError("unsupported value in entry " + quoted_name(key) + " of " + what + ": " + problem);
  };
  switch (v.kind) {
    case Value::Kind::Dict:
      if (v.dict)
        for (const auto& [k, x] : v.dict->entries) flatten(*x, child(k), what, out);
      return;
    case Value::Kind::List:
    case Value::Kind::Tuple:
      for (std::size_t i = 0; i < v.items.size(); ++i) flatten(*v.items[i], child(std::to_string(i)), what, out);
      return;
    case Value::Kind::Tensor:
      if (!v.tensor.defined())
        throw unsupported("a tensor of " + v.storage_type->name +
                          ": xgrad reads bool, int32, int64, float16, bfloat16, float32, float64");
      return put(v.tensor);
    case Value::Kind::Bool: return put(scalar(v.boolean ? 1 : 0, DType::Bool));
    case Value::Kind::Int: return put(from_data(&v.integer, {}));
    case Value::Kind::Float: return put(scalar(v.real, DType::Float64));
    default: throw unsupported(std::string(kind_name(v.kind)) + ", not a tensor");
  }
}

}  // namespace

std::map<std::string, Tensor> unpickle_state_dict(std::string_view pickle, const StorageBytes& storage_bytes,
                                                  std::uint64_t copy_budget, const std::string& what) {
  Unpickler unpickler(pickle, storage_bytes, copy_budget, what);
  const ValuePtr root = unpickler.run();
  if (root->kind != Value::Kind::Dict)
    throw IOError("bad PyTorch checkpoint " + what + ": the pickle holds " + kind_name(root->kind) +
                  ", not a state dict");
  std::map<std::string, Tensor> out;
  flatten(*root, "", what, out);
  return out;
}

}  // namespace xgrad::torch_detail
