# The parts of concrete-python's wire format that cross a trust boundary in a deployment:
# evaluation keys (client -> server) and encrypted values (both ways). Written for qfhe from the
# layout concrete 2.11 serializes (field ordinals and types decide the layout, names do not), so
# that untrusted bytes are parsed by Cap'n Proto's bounds-checked reader and compared with the
# circuit's program info before concrete's own deserializer sees them.
@0xdcadc053470de15b;

enum KeyType { binary @0; ternary @1; }
enum Compression { none @0; seed @1; paillier @2; }

struct Modulus {
  modulus :union { native @0 :NativeModulus; powerOfTwo @1 :PowerOfTwoModulus; integer @2 :IntegerModulus; }
}
struct NativeModulus {}
struct PowerOfTwoModulus { power @0 :UInt32; }
struct IntegerModulus { modulus @0 :UInt32; }

struct Payload { data @0 :List(Data); }
struct Shape { dimensions @0 :List(UInt32); }

struct LweBootstrapKeyParams {
  levelCount @0 :UInt32; baseLog @1 :UInt32; glweDimension @2 :UInt32; polynomialSize @3 :UInt32;
  variance @4 :Float64; integerPrecision @5 :UInt32; modulus @6 :Modulus; keyType @7 :KeyType;
  inputLweDimension @8 :UInt32;
}
struct LweBootstrapKeyInfo {
  id @0 :UInt32; inputId @1 :UInt32; outputId @2 :UInt32; params @3 :LweBootstrapKeyParams;
  compression @4 :Compression;
}
struct LweBootstrapKey { info @0 :LweBootstrapKeyInfo; payload @1 :Payload; }

struct LweKeyswitchKeyParams {
  levelCount @0 :UInt32; baseLog @1 :UInt32; variance @2 :Float64; integerPrecision @3 :UInt32;
  modulus @4 :Modulus; keyType @5 :KeyType; inputLweDimension @6 :UInt32; outputLweDimension @7 :UInt32;
}
struct LweKeyswitchKeyInfo {
  id @0 :UInt32; inputId @1 :UInt32; outputId @2 :UInt32; params @3 :LweKeyswitchKeyParams;
  compression @4 :Compression;
}
struct LweKeyswitchKey { info @0 :LweKeyswitchKeyInfo; payload @1 :Payload; }

struct PackingKeyswitchKeyParams {
  levelCount @0 :UInt32; baseLog @1 :UInt32; glweDimension @2 :UInt32; polynomialSize @3 :UInt32;
  inputLweDimension @4 :UInt32; innerLweDimension @5 :UInt32; variance @6 :Float64;
  integerPrecision @7 :UInt32; modulus @8 :Modulus; keyType @9 :KeyType;
}
struct PackingKeyswitchKeyInfo {
  id @0 :UInt32; inputId @1 :UInt32; outputId @2 :UInt32; params @3 :PackingKeyswitchKeyParams;
  compression @4 :Compression;
}
struct PackingKeyswitchKey { info @0 :PackingKeyswitchKeyInfo; payload @1 :Payload; }

struct ServerKeyset {
  lweBootstrapKeys @0 :List(LweBootstrapKey);
  lweKeyswitchKeys @1 :List(LweKeyswitchKey);
  packingKeyswitchKeys @2 :List(PackingKeyswitchKey);
}

struct RawInfo { shape @0 :Shape; integerPrecision @1 :UInt32; isSigned @2 :Bool; }

struct IntegerCiphertextEncodingInfo {
  width @0 :UInt32; isSigned @1 :Bool;
  mode :union { native @2 :NativeMode; chunked @3 :ChunkedMode; crt @4 :CrtMode; }
  struct NativeMode {}
  struct ChunkedMode { size @0 :UInt32; width @1 :UInt32; }
  struct CrtMode { moduli @0 :List(UInt32); }
}
struct BooleanCiphertextEncodingInfo {}
struct LweCiphertextEncryptionInfo { keyId @0 :UInt32; variance @1 :Float64; lweDimension @2 :UInt32; modulus @3 :Modulus; }
struct LweCiphertextTypeInfo {
  abstractShape @0 :Shape; concreteShape @1 :Shape; integerPrecision @2 :UInt32;
  encryption @3 :LweCiphertextEncryptionInfo; compression @4 :Compression;
  encoding :union { integer @5 :IntegerCiphertextEncodingInfo; boolean @6 :BooleanCiphertextEncodingInfo; }
}
struct PlaintextTypeInfo { shape @0 :Shape; integerPrecision @1 :UInt32; isSigned @2 :Bool; }
struct IndexTypeInfo { shape @0 :Shape; integerPrecision @1 :UInt32; isSigned @2 :Bool; }
struct TypeInfo {
  union { lweCiphertext @0 :LweCiphertextTypeInfo; plaintext @1 :PlaintextTypeInfo; index @2 :IndexTypeInfo; }
}

struct Value { payload @0 :Payload; rawInfo @1 :RawInfo; typeInfo @2 :TypeInfo; }

# The program info a client generates keys and encrypts from (client.specs.json, as JSON).
struct LweSecretKeyParams { lweDimension @0 :UInt32; integerPrecision @1 :UInt32; keyType @2 :KeyType; }
struct LweSecretKeyInfo { id @0 :UInt32; params @1 :LweSecretKeyParams; }
struct KeysetInfo {
  lweSecretKeys @0 :List(LweSecretKeyInfo);
  lweBootstrapKeys @1 :List(LweBootstrapKeyInfo);
  lweKeyswitchKeys @2 :List(LweKeyswitchKeyInfo);
  packingKeyswitchKeys @3 :List(PackingKeyswitchKeyInfo);
}
struct GateInfo { rawInfo @0 :RawInfo; typeInfo @1 :TypeInfo; }
struct CircuitInfo { inputs @0 :List(GateInfo); outputs @1 :List(GateInfo); name @2 :Text; }
struct ProgramInfo { keyset @0 :KeysetInfo; circuits @1 :List(CircuitInfo); }
